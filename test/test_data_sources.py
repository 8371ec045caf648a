"""Data set readers (DDD17, N-ImageNet) and `data.sources` entries of every kind."""

import json

import cv2
import numpy as np
import pytest
from test_training_data import write_dsec, write_mvsec

from training.data.bag_windows import BagSource
from training.data.cache import cache_key
from training.data.ddd17 import Ddd17Sequence
from training.data.dsec import DsecSequence
from training.data.mvsec import MvsecSequence
from training.data.nimagenet import NImageNetFolder
from training.data.sources import detect_format, open_source
from training.stages.common import ConfigError
from training.stages.data import datasets
from training.synthetic.bag import write_synth_bag

MS = 1_000_000


def write_ddd17(root):
    """Write a 6 x 8 DDD17 dirN: event k at 10 k ms, frames every 50 ms, two masks."""
    (root / 'index').mkdir(parents=True)
    k = np.arange(30)
    (5 * MS + 10 * MS * k).astype(np.int64).tofile(root / 'events.dat.t')
    np.stack([k % 8, k % 6, k % 2], axis=1).astype(np.int16).tofile(root / 'events.dat.xyp')
    stamps = 5 * MS + np.array([50, 100, 150, 200]) * MS
    np.save(root / 'index/index_50ms.npy', np.stack([stamps, 5 * k[:4], 5 * k[:4]], axis=1))
    (root / 'imgs').mkdir()
    for frame_id in (1, 2, 3):  # frame 4 has no image
        name = f'img_{frame_id:08d}.png' if frame_id < 3 else f'{frame_id:010d}.png'
        cv2.imwrite(str(root / 'imgs' / name), np.full((6, 8), 10 * frame_id, np.uint8))
    cv2.imwrite(str(root / 'imgs/img_00000002.jpg'), np.zeros((6, 8, 3), np.uint8))  # GEP's
    (root / 'segmentation_masks').mkdir()
    for frame_id, value in ((2, 1), (4, 5)):
        cv2.imwrite(str(root / f'segmentation_masks/segmentation_{frame_id:08d}.png'),
                    np.full((4, 8), value, np.uint8))  # the top 4 of 6 rows


def test_ddd17_windows_at_frames_labels_by_frame_id(tmp_path, caplog):
    write_ddd17(tmp_path / 'dir0')
    samples = list(Ddd17Sequence(tmp_path / 'dir0', sensor=(6, 8)).samples(
        {'duration_ms': 40.0}))
    assert [s['stamp_ns'] for s in samples] == [55 * MS, 105 * MS, 155 * MS, 205 * MS]
    second = samples[1]
    assert (second['t0'], second['t1'], second['sensor']) == (65 * MS, 105 * MS, (6, 8))
    k = np.arange(6, 11)  # 65 .. 105 ms, both ends included
    assert np.array_equal(second['events']['t'], 5 * MS + 10 * MS * k)
    assert np.array_equal(second['events']['x'], k % 8)
    assert np.array_equal(second['events']['y'], k % 6)
    assert np.array_equal(second['events']['p'], k % 2)
    assert second['frame'].shape == (6, 8, 3) and (second['frame'] == 20).all()
    assert (samples[2]['frame'] == 30).all() and (samples[3]['frame'] == 0).all()
    assert 'without their APS frame' in caplog.text
    assert samples[0]['labels'] is None and samples[0]['depth'] is None
    for sample, value in ((second, 1), (samples[3], 5)):
        assert (sample['labels'][:4] == value).all() and (sample['labels'][4:] == 255).all()
    labelled = list(Ddd17Sequence(tmp_path / 'dir0', labelled_only=True, sensor=(6, 8)))
    assert [s['stamp_ns'] for s in labelled] == [105 * MS, 205 * MS]


def write_nimagenet(root, images=None):
    """Write a split folder: 2 files of n01443537 and 1 of n01440764, times in microseconds."""
    sizes = {('n01443537', 'a'): 3, ('n01443537', 'b'): 2, ('n01440764', 'c'): 4}
    dtype = [('x', '<u2'), ('y', '<u2'), ('t', '<i8'), ('p', '?')]
    for (wnid, name), n in sizes.items():
        (root / wnid).mkdir(parents=True, exist_ok=True)
        k = np.arange(n)
        events = np.array(list(zip(k, k + 1, 7000 + 1000 * k[::-1], k % 2)), dtype)
        np.savez(root / wnid / f'{name}.npz', event_data=events)
    cv2.imwrite(str(root / 'n01443537/a.JPEG'), np.full((6, 8, 3), 90, np.uint8))
    cv2.imwrite(str(root / 'n01443537/b.png'), np.zeros((6, 8, 3), np.uint8))  # GEP's render
    if images:
        (images / 'n01440764').mkdir(parents=True)
        cv2.imwrite(str(images / 'n01440764/c.JPEG'), np.full((6, 8, 3), 40, np.uint8))


def test_nimagenet_one_window_per_file_with_its_category(tmp_path):
    write_nimagenet(tmp_path / 'val', tmp_path / 'images')
    folder = NImageNetFolder(tmp_path / 'val', images=tmp_path / 'images')
    samples = list(folder.samples({'duration_ms': 1.0}))  # the window is the whole file
    # Round robin over the sorted classes: c (n01440764), a, then b (n01443537).
    assert [s['category'] for s in samples] == [0, 1, 1]
    assert [len(s['events']) for s in samples] == [4, 3, 2]
    c, a, b = samples
    assert np.array_equal(c['events']['t'], np.arange(4) * 1000 * 1000)  # us -> ns, sorted
    assert np.array_equal(c['events']['x'], [3, 2, 1, 0])
    assert (c['t0'], c['t1'], c['stamp_ns']) == (0, 3 * MS, 3 * MS)
    assert a['t0'] == 4 * MS and a['t1'] == 6 * MS and b['t0'] == 7 * MS  # 1 ms apart
    assert c['sensor'] == (480, 640) and c['labels'] is None and c['depth'] is None
    assert (c['frame'] == 40).all() and (a['frame'] == 90).all()
    assert b['frame'].shape == (480, 640, 3) and (b['frame'] == 0).all()
    index = tmp_path / 'class_index.json'
    index.write_text(json.dumps({'7': ['n01440764', 'tench'], '3': ['n01443537', 'goldfish']}))
    mapped = NImageNetFolder(tmp_path / 'val', class_index=index, limit=1)
    assert [s['category'] for s in mapped] == [7, 3]
    index.write_text(json.dumps({'7': ['n01440764', 'tench']}))
    with pytest.raises(ValueError, match="'n01443537' is not in"):
        NImageNetFolder(tmp_path / 'val', class_index=index)


@pytest.fixture(scope='module')
def data_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp('sets')
    write_dsec(root / 'dsec')
    write_mvsec(root)
    write_ddd17(root / 'dir0')
    write_nimagenet(root / 'extracted_val')
    write_synth_bag(root / 'bag', seconds=0.2, seed=0)
    return root


def test_paths_are_recognised_by_layout(data_sets):
    kinds = {'dsec': DsecSequence, 'seq_data.hdf5': MvsecSequence, 'dir0': Ddd17Sequence,
             'extracted_val': NImageNetFolder, 'bag': BagSource}
    for name, kind in kinds.items():
        assert isinstance(open_source(str(data_sets / name)), kind), name
    assert open_source(data_sets / 'seq_data.hdf5').gt_path == data_sets / 'seq_gt.hdf5'
    assert detect_format(data_sets / 'dsec' / 'images') is None
    mvsec = open_source({'format': 'mvsec', 'path': str(data_sets / 'seq_data.hdf5'),
                         'align': 'image'})
    assert mvsec.align == 'image' and mvsec.gt_path == data_sets / 'seq_gt.hdf5'
    # A bag keeps the identity it always had, so its caches stay valid.
    bag = str(data_sets / 'bag')
    assert open_source(bag).identity() == BagSource(bag).identity()
    assert cache_key([bag], {'name': 'histogram'}, 14, None, 0.2) == \
        cache_key([BagSource(bag)], {'name': 'histogram'}, 14, None, 0.2)


def config(data_sets, tmp_path, sources):
    return {'variant': 'gep_tiny', 'model': {'input_size': [14, 14]},
            'data': {'sources': sources, 'cache': str(tmp_path / 'cache'),
                     'representation': {'name': 'histogram'}, 'val_fraction': 0.0}}


def test_config_sources_of_every_kind_build_one_cache(data_sets, tmp_path):
    sources = [str(data_sets / 'dsec'), str(data_sets / 'seq_data.hdf5'),
               {'format': 'ddd17', 'path': str(data_sets / 'dir0'), 'sensor': [6, 8]},
               {'format': 'nimagenet', 'path': str(data_sets / 'extracted_val'),
                'sensor': [6, 8]},
               str(data_sets / 'bag')]
    train, _ = datasets(config(data_sets, tmp_path, sources), 1)
    sequences = [int(train[i]['sequence']) for i in range(len(train))]
    counts = [sequences.count(s) for s in range(5)]
    assert counts[:4] == [3, 2, 4, 3] and counts[4] > 0  # MVSEC: 2 depth maps with a frame
    categories = [int(train[i]['category']) for i in range(len(train))]
    assert categories[9:12] == [0, 1, 1] and set(categories[:9] + categories[12:]) == {-1}
    ddd17 = [train[i] for i in range(5, 9)]
    assert [bool(item['has_labels']) for item in ddd17] == [False, True, False, True]
    assert train.labelled_items()[:6] == [0, 2, 3, 4, 6, 8]  # DSEC 0, 2; MVSEC; DDD17 2, 4
    assert {9, 10, 11} <= set(train.labelled_items())  # N-ImageNet: its category
    # Without a source of categories the cache has no category column, as before.
    alone, _ = datasets(config(data_sets, tmp_path, sources[:1]), 1)
    assert 'category' not in alone[0] and len(alone) == 3


@pytest.mark.parametrize('entry, message', [
    ('missing.bag', 'no such file or folder; expected a bag'),
    ('notes.txt', 'not recognised; expected a bag'),
    ({'format': 'kitti', 'path': 'dir0'}, 'a mapping needs format'),
    ({'format': 'ddd17', 'path': 'dir0', 'camera': 'left'}, "unknown ddd17 option 'camera'"),
    (42, 'expected a bag'),
])
def test_a_wrong_entry_is_one_config_error(data_sets, tmp_path, entry, message):
    (tmp_path / 'notes.txt').write_text('not data')
    if isinstance(entry, dict):
        entry = {**entry, 'path': str(data_sets / entry['path'])}
    elif isinstance(entry, str):
        entry = str(tmp_path / entry)
    with pytest.raises(ConfigError, match=r'^data\.sources\[1\]: data source .*' + message):
        datasets(config(data_sets, tmp_path, [str(data_sets / 'dsec'), entry]), 1)
