"""The node end to end on real ROS 2: `ros2 launch`, a player over Cyclone DDS, SIGINT.

Each test launches perception.launch.py from the colcon-built package (found through the
ament index), plays recorded messages as serialized bytes at their recorded pace from
another process (harness.py), records what the node publishes, and stops the launch with a
signal. Assertions are on what arrived over DDS and on the launch's log.
"""

import os
import re
import signal
import struct
import time

import numpy as np
import pytest
import yaml

from gep_ros.bag import BagReader
from gep_ros.wire.cdr import WireError
from gep_ros.wire.dvs import decode_event_array
from gep_ros.wire.event_packet import decode_event_packet
from gep_ros.wire.image import decode_image, IMAGE

OUTPUTS = {'depth/image': '32FC1', 'segmentation/labels': 'mono8', 'segmentation/color': 'rgb8'}
EXCEPTION_TEXT = re.compile(r'Traceback|Exception|Error\(|exception')
EXIT_WITHIN_S = 2.0


def bag_messages(path, topics, rename=None):
    """[(topic, msgtype, receive_ns, bytes)] of `topics` in receive order."""
    rename = rename or {}
    with BagReader(path) as reader:
        return [(rename.get(m.topic, m.topic), m.msgtype, m.time_ns, m.data)
                for m in reader.messages(topics)]


def plan(messages, record, expect, clock=False, timeout=120):
    """Return a harness plan: messages at their recorded pace, optionally with /clock."""
    start = messages[0][2]
    return {'publish': [(topic, msgtype, (t - start) / 1e9, data, t if clock else None)
                        for topic, msgtype, t, data in messages],
            'record': record, 'expect': expect, 'timeout': timeout}


def params_file(path, section='/**/perception_node', **values):
    """Write a parameter file, with a queue that holds the whole recording.

    On a busy 2-core machine the model falls behind the camera, and these tests are about
    the ROS edge, not speed.
    """
    values = {'queue_size': 256, **values}
    tree = {}
    for name, value in values.items():
        node = tree
        *parents, leaf = name.split('.')
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    path.write_text(yaml.safe_dump({section: {'ros__parameters': tree}}))
    return path


def reliable(*topics):
    """Return QoS overrides that make inputs reliable, so DDS itself drops nothing in the test."""
    return {'qos_overrides': {t: {'subscription': {'reliability': 'reliable', 'depth': 100}}
                              for t in topics}}


def launch(procs, params, name='launch', **args):
    cmd = ['ros2', 'launch', 'gep_ros', 'perception.launch.py', f'params_file:={params}']
    cmd += [f'{k}:={v}' for k, v in args.items()]
    proc = procs(cmd, name)
    proc.wait_for(r'\]: ready: ', timeout=120)
    return proc


def padded(data):
    """Pad like a real raw subscription does: zeros up to a multiple of 4 bytes."""
    return data + bytes(-len(data) % 4)


def assert_clean_exit(proc, sig):
    """Stop the node the way launch does; it must exit 0 within EXIT_WITHIN_S.

    SIGINT goes to `ros2 launch`, which passes it on to the node. SIGTERM goes to the node
    itself, as launch sends it when SIGINT was not enough (or systemd does); `ros2 launch`
    itself would die on SIGTERM and orphan its processes. The launch file ends the launch
    when the node exits, so either way the launch process finishing times the node.
    """
    if sig == signal.SIGINT:
        code, seconds = proc.stop(sig)
    else:
        pid = int(re.search(r'\[perception_node-1\]: process started with pid \[(\d+)\]',
                            proc.text()).group(1))
        start = time.monotonic()
        os.kill(pid, sig)
        code = proc.popen.wait(10)
        seconds = time.monotonic() - start
    log = proc.text()
    assert code == 0, log[-3000:]
    assert seconds < EXIT_WITHIN_S, f'{seconds:.2f} s to exit after {sig.name}'
    assert re.search(r'\[perception_node-1\]: process has finished cleanly', log), log[-3000:]
    assert 'stopped: ' in log
    assert not EXCEPTION_TEXT.search(log), log[-3000:]
    return log


def last_diagnostics(result):
    mine = [s for s in result['diagnostics'] if s['name'] == 'gep_ros: perception']
    assert mine, 'no /diagnostics from the node'
    return mine


def test_launch_answers_every_frame_with_its_header_and_exits_on_sigterm(
        procs, harness, weights, street, tmp_path):
    topics = ['/dvs/events', '/dvs/image_raw', '/dvs/camera_info']
    messages = bag_messages(street, topics)
    frames = [decode_image(d).header for t, _, _, d in messages if t == '/dvs/image_raw']
    config = params_file(tmp_path / 'robot.yaml', weights=str(weights), backend='cpu',
                         **{'cam0.events_topic': 'dvs/events', 'cam0.image_topic': 'dvs/image_raw',
                            'cam0.camera_info_topic': 'dvs/camera_info',
                            'outputs.points': True},
                         **reliable(*topics))
    node = launch(procs, config)
    record = {f'/dvs/{name}': IMAGE for name in OUTPUTS}
    record['/dvs/depth/points'] = 'sensor_msgs/msg/PointCloud2'
    code, result, out = harness(plan(messages, record, {t: len(frames) for t in record}))
    assert code == 0, out + node.text()[-3000:]
    for name, encoding in OUTPUTS.items():
        got = [decode_image(d) for _, d in result['received'][f'/dvs/{name}']]
        assert [im.header for im in got] == frames, name  # every frame, in order, its header
        assert {(im.encoding, im.height, im.width) for im in got} == {(encoding, 260, 346)}
    assert len(result['received']['/dvs/depth/points']) == len(frames)
    status = last_diagnostics(result)
    assert max(float(s['values']['input /dvs/events rate_hz']) for s in status) > 10
    final = status[-1]
    assert final['values']['windows'] == str(len(frames))
    assert float(final['values']['latency_ms end_to_end p50']) > 0
    assert float(final['values']['latency_ms inference p95']) > 0
    assert final['hardware_id'].startswith('cpu')
    assert final['values']['weights'] != final['hardware_id']
    assert not any(k.startswith(('dropped', 'rejected')) for k in final['values'])
    assert_clean_exit(node, signal.SIGTERM)


def test_evt3_packets_and_two_cameras_on_sim_time_under_a_namespace(
        procs, harness, weights, street, bags_dir, tmp_path):
    """cam0: EventArray + frames; cam1: a real Prophesee EVT3 recording (rate windows).

    Relative topics resolve in the namespace; /clock drives the node's time.
    """
    cam0 = bag_messages(street, ['/dvs/events', '/dvs/image_raw'],
                        rename={'/dvs/events': '/robot1/dvs/events',
                                '/dvs/image_raw': '/robot1/dvs/image_raw'})
    cam1 = bag_messages(bags_dir / 'evpy_test_events_1', ['/event_camera/events'],
                        rename={'/event_camera/events': '/robot1/prophesee/events'})[:260]
    shift = cam0[0][2] - cam1[0][2]  # play both from the same moment
    messages = sorted(cam0 + [(t, m, r + shift, d) for t, m, r, d in cam1], key=lambda m: m[2])
    frames = [decode_image(d).header for t, _, _, d in cam0 if t.endswith('image_raw')]
    packets = [decode_event_packet(d) for _, _, _, d in cam1]
    span_s = (packets[-1].header.stamp_ns - packets[0].header.stamp_ns) / 1e9
    config = params_file(
        tmp_path / 'robot.yaml', weights=str(weights), backend='cpu', cameras=['cam0', 'cam1'],
        **{'cam0.events_topic': 'dvs/events', 'cam0.image_topic': 'dvs/image_raw',
           'cam1.events_topic': 'prophesee/events', 'cam1.events_type': 'event_camera',
           'window.rate_hz': 20.0},
        **reliable('/robot1/dvs/events', '/robot1/dvs/image_raw', '/robot1/prophesee/events'))
    node = launch(procs, config, namespace='robot1', use_sim_time='true')
    assert 'subscribed to /robot1/dvs/events, /robot1/dvs/image_raw, /robot1/prophesee/events' \
        in node.text()
    record = {'/robot1/dvs/depth/image': IMAGE, '/robot1/prophesee/depth/image': IMAGE}
    expect = {'/robot1/dvs/depth/image': len(frames),
              '/robot1/prophesee/depth/image': int(span_s * 20) - 2}
    code, result, out = harness(plan(messages, record, expect, clock=True))
    assert code == 0, out + node.text()[-3000:]
    assert [decode_image(d).header for _, d in result['received']['/robot1/dvs/depth/image']] \
        == frames
    evt3 = [decode_image(d) for _, d in result['received']['/robot1/prophesee/depth/image']]
    assert {(im.header.frame_id, im.height, im.width) for im in evt3} == {('0293', 480, 640)}
    stamps = [im.header.stamp_ns for im in evt3]
    assert stamps == sorted(set(stamps))
    assert np.allclose(np.diff(stamps), 50_000_000, atol=1_000_000)  # 20 Hz on event time
    # The diagnostics' stamp is the node's clock: the played /clock, not the wall clock.
    played = (cam0[0][2], messages[-1][2])
    stamped = [s['stamp_ns'] for s in last_diagnostics(result)]
    assert any(played[0] <= t <= played[1] for t in stamped), (played, stamped)
    assert_clean_exit(node, signal.SIGINT)


@pytest.mark.parametrize('what,setting,expect', [
    ('wrong type', {'window.duration_ms': 50}, r'window\.duration_ms: .*DOUBLE'),
    ('unknown backend', {'backend': 'vulkan'}, r"backend: 'vulkan' is not one of auto, "),
    ('missing weights', {'weights': '/no/such/folder'},
     r'weights: /no/such/folder: no such artifact folder'),
    ('misspelt name', {'window.duraton_ms': 50.0},
     r'unknown parameter window\.duraton_ms \(did you mean window\.duration_ms\?\)'),
    ('out of range', {'max_batch': 0}, r'max_batch: .*'),
    ('misspelt QoS override', {'qos_overrides': {'/dvs/eventz': {'subscription': {'depth': 5}}}},
     r'unknown parameter qos_overrides\./dvs/eventz\.subscription\.depth'),
    ('outputs collide', {'cameras': ['cam0', 'cam1'], 'cam1.events_topic': '/other/events',
                         'cam1.output_namespace': '/dvs'},
     r'cam1 output \w+ and camera cam0 output \w+ are both /dvs/'),
])
def test_bad_parameter_exits_1_with_one_error_line(procs, weights, tmp_path, what, setting,
                                                   expect):
    values = {'weights': str(weights), 'backend': 'cpu', 'cam0.events_topic': '/dvs/events'}
    values.update(setting)
    config = params_file(tmp_path / 'bad.yaml', **values)
    proc = procs(['ros2', 'launch', 'gep_ros', 'perception.launch.py',
                  f'params_file:={config}'], 'launch')
    proc.popen.wait(120)
    log = proc.text()
    node_lines = [line for line in log.splitlines() if line.startswith('[perception_node-1] ')]
    assert len(node_lines) == 1, log
    assert '[ERROR]' in node_lines[0] and 'cannot start: ' in node_lines[0], log
    assert re.search(expect, node_lines[0]), node_lines[0]
    assert re.search(r'process has died .*exit code 1', log), log
    assert not EXCEPTION_TEXT.search(log.replace('[ERROR]', '')), log


def damage(messages):
    """Insert damaged copies after some intact messages; return (stream, {reason: count})."""
    out, reasons = [], {}

    def add(topic, data, decode):
        try:
            decode(padded(data))
        except WireError as exc:
            key = f'{topic}: {exc.field}'
            reasons[key] = reasons.get(key, 0) + 1
        else:
            raise AssertionError('the damage left a valid message')
        return data

    for i, (topic, msgtype, t, data) in enumerate(messages):
        out.append((topic, msgtype, t, data))
        if topic == '/dvs/events' and i % 7 == 0:
            out.append((topic, msgtype, t, add(topic, data[:len(data) // 2],
                                               decode_event_array)))
            ev = decode_event_array(data)
            at = data.index(struct.pack('<III', ev.height, ev.width, len(ev.events))) + 8
            lying = data[:at] + struct.pack('<I', 0x7FFFFFFF) + data[at + 4:]
            out.append((topic, msgtype, t, add(topic, lying, decode_event_array)))
        elif topic == '/dvs/image_raw' and i % 3 == 0:
            image = decode_image(data)
            at = data.index(struct.pack('<II', image.height, image.width))
            taller = data[:at] + struct.pack('<II', image.height + 7, image.width) + data[at + 8:]
            out.append((topic, msgtype, t, add(topic, taller, decode_image)))
    return out, reasons


def test_damaged_messages_counted_once_each_every_intact_frame_answered(
        procs, harness, weights, tiny_onnx, street, tmp_path):
    """The issue's case: backend auto (it logs at INFO first) then rejections (WARN).

    The node loads the ONNX export of these weights from the engine cache (tiny_onnx).
    """
    topics = ['/dvs/events', '/dvs/image_raw']
    messages = bag_messages(street, topics)
    frames = [decode_image(d).header for t, _, _, d in messages if t == '/dvs/image_raw']
    stream, reasons = damage(messages)
    assert sum(reasons.values()) >= 10 and len(reasons) >= 2
    config = params_file(tmp_path / 'robot.yaml', weights=str(weights), backend='auto',
                         **{'cam0.events_topic': '/dvs/events',
                            'cam0.image_topic': '/dvs/image_raw'}, **reliable(*topics))
    node = launch(procs, config)
    record = {f'/dvs/{name}': IMAGE for name in OUTPUTS}
    code, result, out = harness(plan(stream, record, {t: len(frames) for t in record}))
    assert code == 0, out + node.text()[-3000:]
    for name in OUTPUTS:
        got = [decode_image(d).header for _, d in result['received'][f'/dvs/{name}']]
        assert got == frames, name
    final = last_diagnostics(result)[-1]
    rejected = {k[len('rejected '):]: int(v) for k, v in final['values'].items()
                if k.startswith('rejected ')}
    assert rejected == reasons
    assert final['level'] != 2 and final['message'] != 'inference worker stopped'
    assert not any(k.startswith('dropped') for k in final['values'])
    log = assert_clean_exit(node, signal.SIGINT)
    assert log.count('rejected a message on /dvs/') == sum(reasons.values())
