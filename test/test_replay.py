"""`gep replay`: a synthetic bag end to end, the real EVT3 recordings, corrupt input, errors."""

import json

import numpy as np
import pytest

from gep_model.artifact import load_artifact
from gep_model.runtime import choose_backend
from gep_ros.bag import BagReader, BagWriter
from gep_ros.cli.main import main
from gep_ros.evaluation import decode_ground_truth, GroundTruthMatch
from gep_ros.msgtypes import EVENT_ARRAY
from gep_ros.stats import STAGES
from gep_ros.wire.cdr import WireError
from gep_ros.wire.dvs import decode_event_array, encode_event_array
from gep_ros.wire.events import make_events
from gep_ros.wire.image import decode_image, encode_image, IMAGE
from gep_ros.wire.std import Header

OUTPUTS = {'/dvs/depth/image': '32FC1', '/dvs/segmentation/labels': 'mono8',
           '/dvs/segmentation/color': 'rgb8'}
REAL = {'/event_camera/depth/image', '/event_camera/segmentation/labels',
        '/event_camera/segmentation/color'}
MS = 10**6


@pytest.fixture(scope='module')
def weights(tiny_onnx):
    """gep_tiny; its ONNX, which backend auto runs, is exported once for the whole run."""
    return tiny_onnx.path


@pytest.fixture(scope='module')
def synth_bag(tmp_path_factory):
    from training.synthetic.bag import write_synth_bag
    path = tmp_path_factory.mktemp('synth') / 'bag'
    write_synth_bag(path, seconds=1.0, seed=3)
    return path


def replay(bag, weights, out, *extra):
    return main(['replay', str(bag), '--weights', str(weights), '--out', str(out), *extra])


def read_bag(path):
    """Return ({topic: msgtype}, {topic: [(time_ns, data)]}) of a bag."""
    with BagReader(path) as reader:
        types = {t: i.msgtype for t, i in reader.topics.items()}
        messages = {t: [] for t in types}
        for msg in reader.messages():
            messages[msg.topic].append((msg.time_ns, msg.data))
    return types, messages


@pytest.fixture(scope='module')
def synth_run(synth_bag, weights, tmp_path_factory):
    folder = tmp_path_factory.mktemp('run')
    rc = replay(synth_bag, weights, folder / 'out.mcap', '--events-topic', '/dvs/events',
                '--report', str(folder / 'report.json'), '--panels', '2')
    return rc, folder, json.loads((folder / 'report.json').read_text())


def image_stamps(messages, topic):
    return [decode_image(data).header.stamp_ns for _, data in messages[topic]]


def test_every_frame_gets_every_output_with_its_stamp(synth_run, synth_bag):
    rc, folder, report = synth_run
    assert rc == 0
    _, inputs = read_bag(synth_bag)
    frames = image_stamps(inputs, '/dvs/image_raw')
    assert len(frames) == 20
    types, messages = read_bag(folder / 'out.mcap')
    num_classes = len(load_artifact(report['weights']['path']).meta['class_names'])
    for topic, encoding in OUTPUTS.items():
        assert types[topic] == IMAGE
        assert image_stamps(messages, topic) == frames
        # Each output is written at its header stamp, so viewers line them up.
        assert [t for t, _ in messages[topic]] == frames
        for _, data in messages[topic]:
            image = decode_image(data)
            assert image.encoding == encoding
            assert image.array.shape[:2] == (260, 346)
            if encoding == '32FC1':
                assert not np.isinf(image.array).any()
            elif encoding == 'mono8':
                assert image.array.max() < num_classes
    # The inputs and the ground truth are copied through, as recorded.
    for topic in ('/dvs/events', '/dvs/image_raw', '/dvs/camera_info', '/dvs/depth',
                  '/dvs/labels'):
        assert messages[topic] == inputs[topic]
    assert '/event_camera/events' not in types


def test_report_counts_latency_and_metrics(synth_run):
    _, _, report = synth_run
    assert report['windows'] == 20 and report['window_mode'] == 'image'
    assert report['outputs'] == dict.fromkeys(OUTPUTS, 20)
    assert report['dropped'] == {} and report['rejected'] == {}
    assert report['topics'] == {'events': '/dvs/events', 'image': '/dvs/image_raw',
                                'camera_info': '/dvs/camera_info', 'depth_gt': '/dvs/depth',
                                'labels_gt': '/dvs/labels'}
    assert report['backend'] == choose_backend('auto')  # the config's default, auto
    assert report['weights']['variant'] == 'gep_tiny'
    assert len(report['weights']['digest']) == 64
    for stage in STAGES:
        assert report['latency_ms'][stage]['p50'] > 0
        assert report['latency_ms'][stage]['p95'] >= report['latency_ms'][stage]['p50']
    assert report['windows_per_s'] > 0
    depth = report['metrics']['depth']
    for key in ('abs_rel', 'sq_rel', 'rmse', 'rmse_log', 'mae', 'delta1', 'delta2', 'delta3',
                'mae_10', 'mae_20', 'mae_30', 'coverage'):
        assert np.isfinite(depth[key]), key
    assert depth['frames'] == 20 and depth['unmatched'] == 0 and depth['pixels'] > 0
    seg = report['metrics']['segmentation']
    for key in ('miou', 'pixel_acc', 'mean_class_acc'):
        assert np.isfinite(seg[key]), key
    assert seg['frames'] == 20 and seg['num_classes'] == 11
    assert list(seg['iou'])[:2] == ['background', 'building']
    assert all(v is None or 0 <= v <= 1 for v in seg['iou'].values())


def test_panels_are_png_files(synth_run):
    _, folder, report = synth_run
    assert len(report['panels']) == 2
    for path in report['panels']:
        with open(path, 'rb') as f:
            assert f.read(8) == b'\x89PNG\r\n\x1a\n'
        assert path.startswith(str(folder / 'report_window_'))


@pytest.mark.parametrize('name', ['codecs_test_data_evt3_trigger', 'evpy_test_events_1'])
def test_real_evt3_recordings(bags_dir, weights, tmp_path, name, capsys):
    rc = replay(bags_dir / name, weights, tmp_path / 'out', '--panels', '1', '--no-inputs')
    assert rc == 0
    assert 'rate windows' in capsys.readouterr().out
    report = json.loads((tmp_path / 'out' / 'report.json').read_text())
    assert report['window_mode'] == 'rate' and report['topics']['image'] == ''
    assert report['windows'] > 10
    assert report['outputs'] == dict.fromkeys(REAL, report['windows'])
    assert report['rejected'] == {} and report['metrics'] == {}
    types, messages = read_bag(tmp_path / 'out')
    assert set(types) == REAL  # --no-inputs: outputs only
    assert all(len(messages[t]) == report['windows'] for t in REAL)
    assert len(report['panels']) == 1


def corrupt_copy(src, dst):
    """Copy a bag with two EventArray and two Image messages damaged; return the damage."""
    damaged = {('/dvs/events', 10): 'truncated', ('/dvs/events', 40): 'length',
               ('/dvs/image_raw', 5): 'truncated', ('/dvs/image_raw', 12): 'encoding'}
    seen, bad_stamps = {}, []
    with BagReader(src) as reader, BagWriter(dst) as writer:
        for msg in reader.messages():
            index = seen[msg.topic] = seen.get(msg.topic, -1) + 1
            data = bytearray(msg.data)
            how = damaged.get((msg.topic, index))
            if how == 'truncated':
                data = data[:len(data) // 2]
            elif how == 'length':  # the events sequence length, after header, height, width
                data[28:32] = (0x00FFFFFF).to_bytes(4, 'little')
            elif how == 'encoding':
                assert data[32:37] == b'mono8'
                data[33] = ord('X')
            if how:
                decode = decode_image if msg.topic == '/dvs/image_raw' else decode_event_array
                if msg.topic == '/dvs/image_raw':
                    bad_stamps.append(decode_image(msg.data).header.stamp_ns)
                with pytest.raises(WireError):
                    decode(bytes(data))
            writer.write(msg.topic, msg.time_ns, bytes(data), msg.msgtype)
    return bad_stamps


def test_corrupt_messages_are_rejected_counted_and_skipped(synth_bag, weights, tmp_path):
    bad_stamps = corrupt_copy(synth_bag, tmp_path / 'bad')
    rc = replay(tmp_path / 'bad', weights, tmp_path / 'out', '--events-topic', '/dvs/events',
                '--panels', '0')
    assert rc == 0
    report = json.loads((tmp_path / 'out' / 'report.json').read_text())
    rejected = report['rejected']
    assert sum(rejected.values()) == 4
    assert sum(n for k, n in rejected.items() if k.startswith('/dvs/events:')) == 2
    assert sum(n for k, n in rejected.items() if k.startswith('/dvs/image_raw:')) == 2
    assert report['inputs']['/dvs/events'] == 100  # every message was offered
    assert report['outputs'] == dict.fromkeys(OUTPUTS, 18)
    _, inputs = read_bag(synth_bag)
    good = [s for s in image_stamps(inputs, '/dvs/image_raw') if s not in bad_stamps]
    _, messages = read_bag(tmp_path / 'out')
    for topic in OUTPUTS:
        assert image_stamps(messages, topic) == good
    # Rejected inputs are not copied: the output bag holds only messages that decode.
    assert len(messages['/dvs/events']) == 98 and len(messages['/dvs/image_raw']) == 18
    assert report['metrics']['depth']['frames'] == 18


def test_realtime_plays_at_the_recorded_pace(synth_bag, weights, tmp_path):
    rc = replay(synth_bag, weights, tmp_path / 'out', '--events-topic', '/event_camera/events',
                '--realtime', '--panels', '0', '--no-inputs', '--report',
                str(tmp_path / 'r.json'))
    assert rc == 0
    report = json.loads((tmp_path / 'r.json').read_text())
    assert report['mode'] == 'realtime' and report['wall_s'] >= 0.9
    assert 0 < report['windows'] <= 20
    assert report['rejected'] == {}


def small_bag(path, image_topics, events=True):
    header = Header(1_700_000_000 * 10**9, 'cam')
    ev = make_events(np.arange(10), np.arange(10), header.stamp_ns + np.arange(10), np.ones(10))
    with BagWriter(path) as writer:
        if events:
            writer.write('/dvs/events', header.stamp_ns, encode_event_array(header, 20, 20, ev),
                         EVENT_ARRAY)
        for topic in image_topics:
            writer.write(topic, header.stamp_ns,
                         encode_image(header, np.zeros((20, 20), np.uint8), 'mono8'), IMAGE)


def error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('gep: error: ')
    return err[0]


def test_missing_bag_is_one_line(weights, tmp_path, capsys):
    assert replay(tmp_path / 'nothing', weights, tmp_path / 'out') == 2
    assert 'no such file' in error_line(capsys)
    assert not (tmp_path / 'out').exists()


def test_bag_without_event_topic_is_one_line(weights, tmp_path, capsys):
    small_bag(tmp_path / 'bag', ['/cam/image_raw'], events=False)
    assert replay(tmp_path / 'bag', weights, tmp_path / 'out') == 2
    assert 'no event' in error_line(capsys)
    assert not (tmp_path / 'out').exists()


def test_ambiguous_image_topic_is_one_line(weights, tmp_path, capsys):
    small_bag(tmp_path / 'bag', ['/cam_a/image_raw', '/cam_b/image_raw'])
    assert replay(tmp_path / 'bag', weights, tmp_path / 'out') == 2
    line = error_line(capsys)
    assert '/cam_a/image_raw' in line and '/cam_b/image_raw' in line and '--image-topic' in line
    assert replay(tmp_path / 'bag', weights, tmp_path / 'out', '--image-topic',
                  '/cam_b/image_raw', '--panels', '0') == 0


def test_bad_weights_and_ambiguous_events_are_one_line(synth_bag, tmp_path, capsys):
    assert replay(synth_bag, tmp_path / 'no_weights', tmp_path / 'out',
                  '--events-topic', '/dvs/events') == 2
    assert 'no_weights' in error_line(capsys)
    # Two event topics: the frame's namespace picks /dvs/events; without frames, it is
    # ambiguous and the line names both.
    assert replay(synth_bag, tmp_path / 'no_weights', tmp_path / 'out',
                  '--image-topic', 'none') == 2
    line = error_line(capsys)
    assert '/dvs/events' in line and '/event_camera/events' in line and '--events-topic' in line
    assert not (tmp_path / 'out').exists()


def test_ground_truth_matches_nearest_within_half_a_frame():
    match = GroundTruthMatch(['depth'], ['a', 'b'], (1.0, 80.0))
    truth = np.full((4, 4), 5.0, np.float32)
    for k in range(6):
        match.add_gt('depth', 1000 * MS + k * 50 * MS, truth)
    near = 1000 * MS + 60 * MS  # 10 ms after a frame
    far = 1000 * MS + 275 * MS + 1  # 25 ms + 1 ns after the last frame
    match.add_prediction(near, {'depth': truth + 1})
    match.add_prediction(far, {'depth': truth})
    assert [s for s, _, _ in match.resolve()] == [near]  # later ground truth might match far
    assert [s for s, _, _ in match.resolve(final=True)] == [far]
    metrics = match.metrics()['depth']
    assert metrics['frames'] == 1 and metrics['unmatched'] == 1
    assert metrics['mae'] == pytest.approx(1.0)


def test_ground_truth_millimetres_and_unknown_classes():
    header = Header(5, 'cam')
    mm = np.array([[0, 1500], [65535, 250]], np.uint16)
    stamp, depth = decode_ground_truth('depth', encode_image(header, mm, '16UC1'), 11)
    assert stamp == 5 and np.isnan(depth[0, 0])
    np.testing.assert_allclose(depth[0, 1:], [1.5])
    np.testing.assert_allclose(depth[1], [65.535, 0.25])
    labels = np.array([[0, 10], [11, 255]], np.uint8)
    _, out = decode_ground_truth('labels', encode_image(header, labels, 'mono8'), 11)
    assert out.tolist() == [[0, 10], [255, 255]]
    with pytest.raises(WireError):
        decode_ground_truth('depth', encode_image(header, labels, 'mono8'), 11)
