"""Training data: bag windows as the pipeline cuts them, the window cache, DSEC and MVSEC."""

import json

import cv2
import h5py
import numpy as np
import pytest
import torch

from gep_model.artifact import DEFAULT_REPRESENTATION
from gep_model.events import fit_to_input, make_representation
from gep_ros.bag import BagReader, BagWriter
from gep_ros.msgtypes import EVENT_ARRAY
from gep_ros.params import make_params
from gep_ros.windows import WindowCutter
from gep_ros.wire.dvs import decode_event_array, encode_event_array
from gep_ros.wire.events import make_events
from gep_ros.wire.image import decode_image, encode_image, IMAGE, image_to_rgb
from gep_ros.wire.std import Header
from training.data import bag_windows, mvsec
from training.data.bag_windows import iter_bag_windows, match_nearest
from training.data.cache import build_cache, INDEX, time_split
from training.data.dataset import WindowDataset
from training.data.dsec import DsecSequence
from training.data.mvsec import MvsecSequence
from training.synthetic.bag import DEPTH, EVENTS, IMAGE_RAW, LABELS, PACKETS, write_synth_bag

MS = 1_000_000
SIZE = (28, 35)
WINDOW = {'duration_ms': 80.0}  # longer than the 50 ms frame spacing: windows overlap


@pytest.fixture(scope='module')
def bags(tmp_path_factory):
    root = tmp_path_factory.mktemp('bags')
    write_synth_bag(root / 'a', seconds=1.0, seed=0)
    write_synth_bag(root / 'b', seconds=0.5, seed=1)
    return [root / 'a', root / 'b']


@pytest.fixture(scope='module')
def cache(bags, tmp_path_factory):
    out = tmp_path_factory.mktemp('cache')
    return build_cache(bags, out, DEFAULT_REPRESENTATION, SIZE, WINDOW, shard_size=7)


def read_topic(bag, topic, decode):
    with BagReader(bag) as reader:
        return [decode(m.data) for m in reader.messages([topic])]


def test_bag_windows_are_the_pipeline_windows_with_gt_for_every_frame(bags):
    samples = list(iter_bag_windows(bags[0]))
    # What the robot's pipeline cuts, with its default parameters.
    params = make_params({'cam0.image_topic': IMAGE_RAW})
    cutter = WindowCutter(params.cameras[0], params.values)
    expected = []
    with BagReader(bags[0]) as reader:
        for msg in reader.messages([EVENTS, IMAGE_RAW]):
            feed = cutter.events if msg.topic == EVENTS else cutter.image
            expected += feed(msg.data, msg.time_ns)
    expected += cutter.flush()
    assert [(s['t0'], s['t1'], len(s['events'])) for s in samples] == \
        [(w.t0, w.t1, len(w.events)) for w in expected]

    frames = read_topic(bags[0], IMAGE_RAW, decode_image)
    assert [s['stamp_ns'] for s in samples] == [f.header.stamp_ns for f in frames]
    assert len(samples) == 20
    events = np.concatenate([a.events for a in read_topic(bags[0], EVENTS, decode_event_array)])
    depth = {d.header.stamp_ns: d.array for d in read_topic(bags[0], DEPTH, decode_image)}
    labels = {d.header.stamp_ns: d.array for d in read_topic(bags[0], LABELS, decode_image)}
    for sample, frame in zip(samples, frames):
        assert sample['t1'] == sample['stamp_ns'] and sample['t1'] - sample['t0'] == 50 * MS
        inside = events[(events['t'] >= sample['t0']) & (events['t'] <= sample['t1'])]
        assert np.array_equal(np.sort(sample['events']['t']), np.sort(inside['t']))
        assert sample['sensor'] == (260, 346)
        assert np.array_equal(sample['frame'], image_to_rgb(frame))
        assert sample['depth'].dtype == np.float32
        assert np.array_equal(sample['depth'], depth[sample['stamp_ns']], equal_nan=True)
        assert np.array_equal(sample['labels'], labels[sample['stamp_ns']])
    assert sum(len(s['events']) for s in samples[1:]) > 10_000


def test_event_packets_give_the_same_windows(bags):
    arrays = list(iter_bag_windows(bags[1], window={'events': 3000}))
    packets = list(iter_bag_windows(bags[1], events_topic=PACKETS, window={'events': 3000}))
    assert [(s['t0'], s['t1']) for s in arrays] == [(s['t0'], s['t1']) for s in packets]
    assert all(len(s['events']) == 3000 for s in arrays[1:])


def write_small_bag(path, image_topics, depth_mm=None):
    """Write events on /cam/events, frames at 50 and 80 ms, and GT image topics at 50 ms."""
    with BagWriter(path) as bag:
        events = make_events([1, 2, 3], [0, 1, 2], np.array([10, 40, 90]) * MS, [1, 0, 1])
        bag.write('/cam/events', 95 * MS, encode_event_array(Header(0, 'cam'), 4, 6, events),
                  EVENT_ARRAY)
        for stamp in (50, 80):
            header = Header(stamp * MS, 'cam')
            bag.write('/cam/image', 51 * MS, encode_image(header, np.full((4, 6), stamp,
                                                                          np.uint8), 'mono8'),
                      IMAGE)
            if stamp == 80:
                continue  # the second frame has no GT
            for topic, (array, encoding) in image_topics.items():
                bag.write(topic, 52 * MS, encode_image(header, array, encoding), IMAGE)


def test_gt_topics_found_by_type_16bit_depth_in_mm(tmp_path):
    depth = np.array([[0, 1500, 2000, 65535, 0, 1]] * 4, np.uint16)
    labels = np.arange(24, dtype=np.uint8).reshape(4, 6)
    write_small_bag(tmp_path / 'bag', {'/cam/depth/image_rect': (depth, '16UC1'),
                                       '/cam/semantic': (labels, 'mono8')})
    first, second = iter_bag_windows(tmp_path / 'bag')
    assert (first['t0'], first['t1'], len(first['events'])) == (0, 50 * MS, 2)
    assert np.array_equal(first['depth'][0], np.array(
        [np.nan, 1.5, 2.0, 65.535, np.nan, 0.001], np.float32), equal_nan=True)
    assert np.array_equal(first['labels'], labels)
    assert second['stamp_ns'] == 80 * MS and len(second['events']) == 1
    assert second['depth'] is None and second['labels'] is None
    no_gt = next(iter_bag_windows(tmp_path / 'bag', depth_topic='', labels_topic=''))
    assert no_gt['depth'] is None and no_gt['labels'] is None


def test_ambiguous_topics_name_the_candidates(tmp_path):
    grey = np.zeros((4, 6), np.uint8)
    write_small_bag(tmp_path / 'a', {'/left/image': (grey, 'mono8'),
                                     '/cam/labels': (grey, 'mono8'),
                                     '/cam/seg': (grey, 'mono8')})
    # Two frame topics, but only /cam/image is beside /cam/events; two label topics there.
    with pytest.raises(ValueError, match=r'2 labels ground-truth topics \(/cam/labels, '
                                         r'/cam/seg\); choose one with labels_topic='):
        next(iter_bag_windows(tmp_path / 'a'))
    sample = next(iter_bag_windows(tmp_path / 'a', labels_topic='/cam/seg'))
    assert (sample['frame'] == 50).all() and sample['labels'] is not None
    write_small_bag(tmp_path / 'b', {'/cam/image_color': (grey, 'mono8')})
    with pytest.raises(ValueError, match=r'2 image topics \(/cam/image, /cam/image_color\)'):
        next(iter_bag_windows(tmp_path / 'b'))


def nearest_rows_cols(shape, size):
    """Return the source row and column of each output pixel (nearest, pixel centres)."""
    return [np.minimum(((np.arange(n) + 0.5) * s / n).astype(int), s - 1)
            for n, s in zip(size, shape)]


def test_cache_round_trip(bags, cache):
    samples = list(iter_bag_windows(bags[1], window=WINDOW))
    items = WindowDataset(cache, 'train'), WindowDataset(cache, 'val')
    rows = {(int(it['sequence'][0]), int(it['position'][0])): it
            for ds in items for it in (ds[i] for i in range(len(ds)))}
    rep = make_representation(**DEFAULT_REPRESENTATION)
    checked = 0
    for position, sample in enumerate(samples):
        item = rows.get((1, position))
        if item is None:
            continue  # a window across the split boundary
        events = rep(sample['events'], sample['t0'], sample['t1'], *sample['sensor'])
        events = fit_to_input(events, SIZE).half().float()
        assert torch.equal(item['events'][0], events)
        frame = torch.from_numpy(sample['frame']).permute(2, 0, 1).float() / 255
        assert (item['images'][0] - fit_to_input(frame, SIZE)).abs().max() <= 0.5 / 255 + 1e-6
        ys, xs = nearest_rows_cols(sample['labels'].shape, SIZE)
        assert torch.equal(item['labels'][0], torch.from_numpy(
            sample['labels'][ys][:, xs].astype(np.int64)))
        assert torch.equal(item['depth'][0], torch.from_numpy(sample['depth'][ys][:, xs]))
        assert item['has_depth'].all() and item['has_labels'].all()
        assert int(item['stamps'][0]) == sample['stamp_ns']
        checked += 1
    crossing = json.loads((cache / INDEX).read_text())['sequences'][1]['none']
    assert crossing == 2 and checked == len(samples) - crossing


def test_second_build_reuses_the_cache_without_opening_bags(bags, cache, monkeypatch):
    def refuse(*_):
        raise AssertionError('a bag was opened')

    monkeypatch.setattr(bag_windows, 'BagReader', refuse)
    again = build_cache(bags, cache.parent, DEFAULT_REPRESENTATION, SIZE, WINDOW,
                        shard_size=3)  # layout only: still the same cache
    assert again == cache
    with pytest.raises(AssertionError, match='opened'):
        build_cache(bags, cache.parent, DEFAULT_REPRESENTATION, (14, 14), WINDOW)


def test_another_representation_or_window_is_another_cache(bags, cache):
    other = build_cache(bags[1:], cache.parent, {'name': 'histogram'}, SIZE, WINDOW)
    assert other != cache and other.parent == cache.parent
    index = json.loads((other / INDEX).read_text())
    assert index['key_parts']['representation']['name'] == 'histogram'
    assert WindowDataset(other, 'train')[0]['events'].shape == (1, 2, *SIZE)
    shorter = build_cache(bags[1:], cache.parent, {'name': 'histogram'}, SIZE,
                          {'duration_ms': 40.0})
    assert shorter not in (cache, other)


def test_time_split_by_hand():
    splits, boundary = time_split(np.array([0, 10, 20, 25, 30]), np.array([10, 20, 30, 35, 40]),
                                  0.25)
    assert boundary == 30 and splits == ['train', 'train', 'train', 'none', 'val']


def test_split_is_by_time_per_sequence(cache):
    index = json.loads((cache / INDEX).read_text())
    samples = index['samples']
    assert index['count'] == 30 and len(index['shards']) == 5  # 20 + 10 windows, 7 a shard
    for seq, info in enumerate(index['sequences']):
        rows = [i for i, s in enumerate(samples['sequence']) if s == seq]
        stamps = {name: [samples['stamp_ns'][i] for i in rows if samples['split'][i] == name]
                  for name in ('train', 'val', 'none')}
        assert max(stamps['train']) < min(stamps['none']) <= max(stamps['none']) \
            < min(stamps['val'])
        span = info['end_ns'] - info['start_ns']
        assert info['end_ns'] - info['boundary_ns'] == round(0.2 * span)
        # Windows: stamp - 80 ms .. stamp; val windows start at or after the boundary.
        assert min(stamps['val']) - 80 * MS >= info['boundary_ns'] >= max(stamps['train'])
        assert abs(len(stamps['val']) - 0.2 * len(rows)) <= 1.5
    assert [s['samples'] for s in index['sequences']] == [20, 10]


@pytest.mark.parametrize('length', [1, 3])
def test_dataset_runs_stay_in_one_sequence_and_split(cache, length):
    index = json.loads((cache / INDEX).read_text())
    for split in ('train', 'val'):
        data = WindowDataset(cache, split, sequence_length=length)
        runs = {}
        for seq, name in zip(index['samples']['sequence'], index['samples']['split']):
            runs[seq] = runs.get(seq, 0) + (name == split)
        assert len(data) == sum(max(n - length + 1, 0) for n in runs.values())
        stamps = {s for s, name in zip(index['samples']['stamp_ns'], index['samples']['split'])
                  if name == split}
        for i in range(len(data)):
            item = data[i]
            assert item['events'].shape == (length, 3, *SIZE)
            assert (item['sequence'] == item['sequence'][0]).all()
            assert torch.equal(item['position'], item['position'][0] + torch.arange(length))
            assert torch.all(item['stamps'][1:] - item['stamps'][:-1] == 50 * MS)
            assert set(item['stamps'].tolist()) <= stamps
    data = WindowDataset(cache, 'train', length)
    batch = data.batch([0, 2, 1])
    assert batch['images'].shape == (3, length, 3, *SIZE)
    assert batch['has_image'].all() and data.key == cache.name and data.num_windows == 30
    # Stages that precompute per-window features address cache rows directly.
    rows = data.window_indices(2)
    assert torch.equal(data.windows(rows)['events'], data[2]['events'])
    assert torch.equal(data.windows(rows[::-1])['stamps'], data[2]['stamps'].flip(0))
    assert data.labelled_items() == list(range(len(data)))  # the synthetic bags have GT
    assert batch['labels'].dtype == torch.int64 and batch['has_depth'].dtype == torch.bool
    assert 0 <= batch['images'].min() and batch['images'].max() <= 1


def write_dsec(root):
    """Write an 8 x 6 DSEC sequence: event k at 5 k ms, x = k % 8, y = k % 6, rectified x + 1."""
    (root / 'events/left').mkdir(parents=True)
    k = np.arange(40)
    t = 5000 * k
    with h5py.File(root / 'events/left/events.h5', 'w') as f:
        for name, values, dtype in (('x', k % 8, 'u2'), ('y', k % 6, 'u2'), ('p', k % 2, 'u1'),
                                    ('t', t, 'u4')):
            f.create_dataset(f'events/{name}', data=values.astype(dtype))
        f['ms_to_idx'] = np.searchsorted(t, np.arange(200) * 1000).astype('u8')
        f['t_offset'] = np.int64(1_000_000)
    ys, xs = np.mgrid[0:6, 0:8]
    with h5py.File(root / 'events/left/rectify_map.h5', 'w') as f:
        f['rectify_map'] = np.stack([xs + 0.6, ys + 0.2], axis=-1).astype(np.float32)
    (root / 'images/left/rectified').mkdir(parents=True)
    for i in range(3):
        rgb = np.zeros((6, 8, 3), np.uint8) + np.array([10 * i + 1, 2, 3], np.uint8)
        cv2.imwrite(str(root / f'images/left/rectified/{i:06d}.png'), rgb[..., ::-1])
    np.savetxt(root / 'images/timestamps.txt', 1_000_000 + np.array([50, 100, 150]) * 1000,
               fmt='%d')
    (root / 'semantic/left/11classes').mkdir(parents=True)
    for i in range(2):
        cv2.imwrite(str(root / f'semantic/left/11classes/{i:06d}.png'),
                    np.full((4, 8), 3 + 4 * i, np.uint8))  # 4 of the 6 rows labelled
    np.savetxt(root / 'semantic/left/seq_semantic_timestamps.txt',
               1_000_000 + np.array([50_000, 150_000]) + 2000, fmt='%d')  # 2 ms off


def test_dsec_events_rectified_windows_at_frames_labels_matched(tmp_path):
    write_dsec(tmp_path / 'seq')
    samples = list(DsecSequence(tmp_path / 'seq'))
    assert [s['stamp_ns'] for s in samples] == [1_050 * MS, 1_100 * MS, 1_150 * MS]
    mid = samples[1]
    # Events 10 .. 20 (50 .. 100 ms, both ends included); k = 15 has x 7 -> 8: off the sensor.
    assert (mid['t0'], mid['sensor']) == (1_050 * MS, (6, 8))
    k = np.array([10, 11, 12, 13, 14, 16, 17, 18, 19, 20])
    assert np.array_equal(mid['events']['t'], 1_000 * MS + 5 * MS * k)
    assert np.array_equal(mid['events']['x'], k % 8 + 1)
    assert np.array_equal(mid['events']['y'], k % 6)
    assert np.array_equal(mid['events']['p'], k % 2)
    assert np.array_equal(mid['frame'][0, 0], [11, 2, 3]) and mid['frame'].shape == (6, 8, 3)
    assert mid['labels'] is None and mid['depth'] is None
    for sample, value in ((samples[0], 3), (samples[2], 7)):
        assert sample['labels'].shape == (6, 8)
        assert (sample['labels'][:4] == value).all() and (sample['labels'][4:] == 255).all()
    last4 = list(DsecSequence(tmp_path / 'seq').samples({'events': 4}))[1]
    assert np.array_equal(last4['events']['t'], 1_000 * MS + 5 * MS * np.arange(17, 21))
    assert last4['t0'] == 1_085 * MS


def write_mvsec(root):
    """Write MVSEC files: events at 10 s + 5 k ms, frames at 10.001 + 0.04 i s, depth maps."""
    k = np.arange(60)
    events = np.stack([k % 8, k % 6, 10.0 + 0.005 * k, np.where(k % 2, 1.0, -1.0)], axis=1)
    with h5py.File(root / 'seq_data.hdf5', 'w') as f:
        f['davis/left/events'] = events
        f['davis/left/image_raw'] = np.arange(7, dtype=np.uint8)[:, None, None] * \
            np.full((1, 6, 8), 10, np.uint8)
        f['davis/left/image_raw_ts'] = 10.001 + 0.04 * np.arange(7)
    depth = np.full((3, 6, 8), 1.5, np.float32) + np.arange(3, dtype=np.float32)[:, None, None]
    depth[:, 0, 0], depth[:, 0, 1] = np.nan, 0.0
    with h5py.File(root / 'seq_gt.hdf5', 'w') as f:
        f['davis/left/depth_image_rect'] = depth
        f['davis/left/depth_image_rect_ts'] = np.array([10.1, 10.2, 10.29])
    return depth


def test_mvsec_windows_at_depth_frames_and_depth_matched(tmp_path, monkeypatch):
    depth = write_mvsec(tmp_path)
    monkeypatch.setattr(mvsec, 'BLOCK', 7)  # windows spanning several blocks
    seq = MvsecSequence(tmp_path / 'seq_data.hdf5', tmp_path / 'seq_gt.hdf5')
    first, second = seq  # 10.29 s has no frame within 20 ms: skipped
    assert (first['t0'], first['t1']) == (10_050 * MS, 10_100 * MS)
    k = np.arange(10, 21)
    assert np.array_equal(first['events']['t'], 10_000 * MS + 5 * MS * k)
    assert np.array_equal(first['events']['x'], k % 8)
    assert np.array_equal(first['events']['p'], k % 2)
    assert first['sensor'] == (6, 8) and first['labels'] is None
    assert (first['frame'] == 20).all() and (second['frame'] == 50).all()  # 10.081, 10.201 s
    expected = depth[0].copy()
    expected[0, 1] = np.nan
    assert np.array_equal(first['depth'], expected, equal_nan=True)
    assert second['depth'][1, 1] == 2.5
    images = list(MvsecSequence(tmp_path / 'seq_data.hdf5', tmp_path / 'seq_gt.hdf5',
                                align='image').samples({'events': 5}))
    assert len(images) == 7 and images[0]['stamp_ns'] == 10_001 * MS
    assert [None if s['depth'] is None else float(s['depth'][1, 1]) for s in images] == \
        [None, None, 1.5, 1.5, 2.5, 2.5, 2.5]
    assert all(len(s['events']) == 5 for s in images[1:])
    assert images[2]['t0'] == 10_060 * MS  # last 5 events up to 10.081 s: 60 .. 80 ms


def test_readers_as_cache_sources(tmp_path):
    write_dsec(tmp_path / 'dsec')
    write_mvsec(tmp_path)
    sources = [DsecSequence(tmp_path / 'dsec'),
               MvsecSequence(tmp_path / 'seq_data.hdf5', tmp_path / 'seq_gt.hdf5')]
    folder = build_cache(sources, tmp_path / 'cache', {'name': 'histogram'}, (6, 8),
                         val_fraction=0.34)
    train = WindowDataset(folder, 'train')
    assert len(train) == 2 and len(WindowDataset(folder, 'val')) == 2
    dsec_item, mvsec_item = train[0], train[1]
    assert dsec_item['sequence'].tolist() == [0] and mvsec_item['sequence'].tolist() == [1]
    assert dsec_item['has_labels'].all() and not dsec_item['has_depth'].any()
    assert dsec_item['depth'].isnan().all() and int(dsec_item['labels'][0, 5, 0]) == 255
    assert mvsec_item['has_depth'].all() and not mvsec_item['has_labels'].any()
    assert (mvsec_item['labels'] == 255).all()
    # DSEC labels the first and last frames only: its first item has GT, as MVSEC's does.
    assert train.labelled_items() == [0, 1]
    assert WindowDataset(folder, 'val').labelled_items() == [0, 1]
    everything = build_cache(sources, tmp_path / 'cache', {'name': 'histogram'}, (6, 8),
                             val_fraction=0.0)
    assert WindowDataset(everything, 'train').labelled_items() == [0, 2, 3, 4]  # not DSEC 1
    assert float(mvsec_item['events'].sum()) > 0


def test_match_nearest_by_hand():
    assert match_nearest([30, 10, 20], [9, 15, 16, 26, 40], tolerance=4).tolist() == \
        [1, -1, 2, 0, -1]
