"""The `gep` command line: bag info, event export, synthetic bags and user errors."""

import json
import subprocess
import sys

import numpy as np
import pytest

from gep_ros.bag import BagReader, BagWriter
from gep_ros.cli.main import main
from gep_ros.wire.event_packet import decode_event_packet
from training.synthetic.bag import write_synth_bag


@pytest.fixture(scope='module')
def sample_bag(tmp_path_factory):
    path = tmp_path_factory.mktemp('sample') / 'bag'
    write_synth_bag(path, seconds=0.5, seed=3)
    return path


def run_gep(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_info_json_counts_real_evt3_events(capsys, bags_dir):
    code, out, err = run_gep(capsys, 'bag', 'info', bags_dir / 'evpy_test_events_1', '--json')
    assert code == 0, err
    info = json.loads(out)
    topic = info['event_topics']['/event_camera/events']
    assert (topic['off'], topic['on']) == (218291, 125183)
    assert topic['triggers'] == 2078 + 2079
    assert (topic['width'], topic['height']) == (640, 480)
    assert info['topics']['/event_camera/events']['messages'] == 517
    assert 2.0 < info['duration_s'] < 2.1 and topic['rate_ev_s'] > 0


def test_info_table_lists_topics(capsys, sample_bag):
    code, out, _ = run_gep(capsys, 'bag', 'info', sample_bag)
    assert code == 0
    for line in ('/dvs/events', '/dvs/image_raw', '/event_camera/events', 'events on',
                 '/dvs/depth', '/dvs/labels', '/dvs/camera_info'):
        assert line in out
    assert out.count('events on') == 2


def test_events_sensor_time_matches_reference_sums(capsys, bags_dir, tmp_path):
    out = tmp_path / 'ev.npz'
    code, _, err = run_gep(capsys, 'bag', 'events', bags_dir / 'evpy_test_events_1.bag',
                           '--time', 'sensor', '--out', out)
    assert code == 0, err
    ev = np.load(out)
    assert ev['t'].dtype == np.int64 and ev['x'].dtype == np.uint16
    assert ev['y'].dtype == np.uint16 and ev['p'].dtype == np.uint8
    assert int(np.count_nonzero(ev['p'] == 0)) == 218291
    assert int(np.count_nonzero(ev['p'] == 1)) == 125183
    assert int(np.count_nonzero(ev['trigger_p'] == 0)) == 2078
    assert int(np.count_nonzero(ev['trigger_p'] == 1)) == 2079
    total_us = int((ev['t'] // 1000).sum()) + int((ev['trigger_t'] // 1000).sum())
    assert total_us == 2885601049874
    assert int(ev['t'][0]) == 7139845 * 1000


@pytest.mark.parametrize('name, count', [('codecs_test_data_evt3_trigger', 82469),
                                         ('evpy_test_events_2', 360223 + 211043)])
def test_events_ros_time_follows_the_header_stamps(capsys, bags_dir, tmp_path, name, count):
    out = tmp_path / 'ev.npz'
    assert run_gep(capsys, 'bag', 'events', bags_dir / name, '--out', out)[0] == 0
    t = np.load(out)['t']
    with BagReader(bags_dir / name) as bag:
        stamps = [decode_event_packet(m.data).header.stamp_ns for m in bag.messages()]
    # Each packet's events start no earlier than its stamp minus latency and end before
    # the next packets are stamped; sensor-clock spacing is kept throughout.
    assert len(t) == count
    assert stamps[0] - 10**6 <= t.min() and t.max() <= stamps[-1] + 10**8
    assert np.all(np.diff(t) >= 0)


def test_synth_bag_streams_agree_on_ros_time(capsys, sample_bag, tmp_path):
    a, b = tmp_path / 'a.npz', tmp_path / 'b.npz'
    assert run_gep(capsys, 'bag', 'events', sample_bag, '--topic', '/dvs/events',
                   '--out', a)[0] == 0
    assert run_gep(capsys, 'bag', 'events', sample_bag, '--topic', '/event_camera/events',
                   '--out', b)[0] == 0
    ea, eb = np.load(a), np.load(b)
    assert len(ea['t']) > 10000
    for key in 't', 'x', 'y', 'p':
        np.testing.assert_array_equal(ea[key], eb[key])
    assert 'trigger_t' in eb and 'trigger_t' not in ea


def test_corrupt_message_is_skipped_and_counted(capsys, sample_bag, tmp_path):
    damaged = tmp_path / 'damaged'
    with BagReader(sample_bag) as src, BagWriter(damaged) as dst:
        for i, msg in enumerate(src.messages(['/dvs/events'])):
            data = msg.data[:40] if i == 3 else msg.data
            dst.write(msg.topic, msg.time_ns, data, msgtype=msg.msgtype)
        total = src.topics['/dvs/events'].count
    code, out, err = run_gep(capsys, 'bag', 'info', damaged, '--json')
    assert code == 0
    topic = json.loads(out)['event_topics']['/dvs/events']
    assert topic['rejected'] == 1 and topic['messages'] == total - 1
    assert 'skipped 1 corrupt message' in err and err.count('\n') == 1


@pytest.mark.parametrize('argv, message', [
    (['bag', 'info', 'no/such/bag.mcap'], 'no such file'),
    (['bag', 'events', '{bag}', '--topic', '/nope', '--out', '{tmp}/x.npz'], 'no topic /nope'),
    (['bag', 'events', '{bag}', '--topic', '/dvs/image_raw', '--out', '{tmp}/x.npz'],
     'not an event type'),
    (['bag', 'events', '{bag}', '--topic', '/dvs/camera_info', '--out', '{tmp}/x.npz'],
     'not an event type'),
    (['synth', '--out', '{bag}'], 'already exists'),
    (['synth', '--out', '{tmp}/new', '--width', '4096'], '--width must be'),
    (['synth', '--out', '{tmp}/new', '--seed', '-1'], '--seed must be'),
    (['bag', 'events', '{bag}', '--out', '{tmp}/x.npz'], '2 event topics'),
])
def test_user_errors_print_one_line_and_exit_2(capsys, sample_bag, tmp_path, argv, message):
    argv = [a.format(bag=sample_bag, tmp=tmp_path) for a in argv]
    code, out, err = run_gep(capsys, *argv)
    assert code == 2
    assert err.startswith('gep: error: ') and message in err and err.count('\n') == 1


def test_console_entry_point_runs(sample_bag):
    result = subprocess.run([sys.executable, '-m', 'gep_ros.cli.main', 'bag', 'info',
                             str(sample_bag), '--json'], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert '/dvs/events' in json.loads(result.stdout)['event_topics']
