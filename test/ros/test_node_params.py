"""Parameters, names and QoS of the node on the real rclpy.

Descriptors with ranges, QoS defaults and per-topic overrides, the logging bridge and
publishing after shutdown are read from a node started inside a probe process
(probe_node.py). Parameter file keys, namespaces, remapping and use_sim_time go through
`ros2 run` and `ros2 launch` as a user types them, several nodes at a time.
"""

import json
from pathlib import Path
import signal
import sys

import yaml

from gep_ros.params import CAMERA_PARAMS, describe, PARAMS

HERE = Path(__file__).resolve().parent

READY = r'\]: ready: '


def test_descriptors_qos_logging_and_publish_after_shutdown(procs, weights, tmp_path):
    out = tmp_path / 'probe.json'
    overrides = tmp_path / 'qos.yaml'
    overrides.write_text(yaml.safe_dump({'/**': {'ros__parameters': {'qos_overrides': {
        '/dvs/events': {'subscription': {'reliability': 'reliable', 'depth': 50}}}}}}))
    proc = procs([sys.executable, str(HERE / 'probe_node.py'), str(out), '-p',
                  f'weights:={weights}', '-p', 'backend:=cpu', '-p',
                  'cam0.image_topic:=dvs/image_raw', '--params-file', str(overrides)], 'probe')
    assert proc.popen.wait(120) == 0, proc.text()
    report = json.loads(out.read_text())
    declared = report['parameters']
    schema = dict(PARAMS, **{f'cam0.{k}': p for k, p in CAMERA_PARAMS.items()})
    for name, param in schema.items():
        d = declared[name]
        assert d['read_only'], name
        expected = describe(param)
        assert d['description'] == (f'camera cam0: {expected}' if name.startswith('cam0.')
                                    else expected), name
        ranges = d['integer_range'] + d['floating_point_range']
        if param.low is None:
            assert ranges == [], name
        else:
            assert ranges == [[param.low, param.high, 0]], name
            assert type(ranges[0][0]) is type(param.default), name
        if param.choices:
            assert all(c in d['additional_constraints'] for c in param.choices), name
    assert declared['weights']['value'] == str(weights)
    # Sensor-data QoS by default, a per-topic override where one is given.
    assert report['subscriptions']['/dvs/image_raw'] == {
        'reliability': 'BEST_EFFORT', 'history': 'KEEP_LAST', 'depth': 5}
    assert report['subscriptions']['/dvs/events'] == {
        'reliability': 'RELIABLE', 'history': 'KEEP_LAST', 'depth': 50}
    assert declared['qos_overrides./dvs/events.subscription.depth']['read_only']
    for topic in ('/dvs/depth/image', '/dvs/segmentation/labels', '/dvs/segmentation/color'):
        assert report['publishers'][topic] == {
            'reliability': 'RELIABLE', 'history': 'KEEP_LAST', 'depth': 10}
    assert 'qos_overrides./dvs/depth/image.publisher.reliability' in declared
    assert 'qos_overrides./diagnostics.publisher.depth' in declared
    assert report['hardware_id'].startswith('cpu: ')
    assert report['log_errors'] == []  # one call site, every severity: no ValueError
    text = proc.text()
    for level in ('INFO', 'WARN', 'ERROR'):
        assert f'[{level}]' in text and 'probe record at level' in text
    assert report['after_shutdown'] == {'shutdown': 1}
    assert 'Traceback' not in text


KEYS = [  # (top-level key of the file, namespace of the node)
    ('/**', ''),
    ('perception_node', ''),
    ('/perception_node', ''),
    ('/**/perception_node', '/robot1'),
    ('/robot1/perception_node', '/robot1'),
    ('/*/perception_node', '/robot1'),
]


def test_parameter_file_keys_namespaces_and_remapping(procs, weights, tmp_path):
    """Start nodes as `ros2 run ... --params-file` does, with every key form ROS 2 allows.

    Each reaches the node; relative topics resolve in its namespace and follow remapping; a
    section for another node does not apply.
    """
    runs = []
    for i, (key, namespace) in enumerate(KEYS + [('/other_node', '')]):
        config = tmp_path / f'keys{i}.yaml'
        config.write_text(yaml.safe_dump({key: {'ros__parameters': {
            'weights': str(weights), 'backend': 'cpu',
            'cam0': {'events_topic': 'ev/x', 'image_topic': '/abs/image'}}}}))
        args = ['--params-file', str(config)] + (['-r', f'__ns:={namespace}'] if namespace else [])
        if i == 0:
            args += ['-r', 'ev/x:=/remapped/events', '-r', 'ev/depth/image:=/remapped/depth']
        runs.append((key, namespace, procs(['ros2', 'run', 'gep_ros', 'perception_node',
                                           '--ros-args', *args], f'run{i}')))
    for i, (key, namespace, proc) in enumerate(runs):
        if key == '/other_node':  # defaults: no weights, dvs/events; applies to nobody else
            proc.wait_for(READY, timeout=120)
            assert 'subscribed to /dvs/events,' in proc.text()
            assert 'randomly initialised gep_tiny' in proc.text()
        elif i == 0:
            proc.wait_for(READY, timeout=120)
            assert 'subscribed to /remapped/events, /abs/image, publishing ' in proc.text()
            assert '/remapped/depth' in proc.text() and '/ev/segmentation/labels' in proc.text()
        else:
            proc.wait_for(READY, timeout=120)
            assert f'subscribed to {namespace}/ev/x, /abs/image, publishing ' in proc.text(), key
            assert f'{namespace}/ev/depth/image' in proc.text(), key
        code, _ = proc.stop(signal.SIGINT, group=True)  # Ctrl-C in the terminal
        assert code == 0, proc.text()


def test_use_sim_time_from_the_file_unless_the_launch_argument_is_given(
        procs, weights, tmp_path):
    config = tmp_path / 'sim.yaml'
    config.write_text(yaml.safe_dump({'/**': {'ros__parameters': {
        'use_sim_time': True, 'weights': str(weights), 'backend': 'cpu'}}}))
    launch = ['ros2', 'launch', 'gep_ros', 'perception.launch.py', f'params_file:={config}']
    from_file = procs(launch, 'from_file')
    argument = procs(launch + ['use_sim_time:=false'], 'argument')
    bad = procs(launch + ['use_sim_time:=maybe'], 'bad')
    from_file.wait_for(READY, timeout=120)
    argument.wait_for(READY, timeout=120)
    assert 'sim time (/clock)' in from_file.text()
    assert ', ROS time, ' in argument.text()
    for proc in (from_file, argument):
        assert proc.stop(signal.SIGINT)[0] == 0, proc.text()
    assert bad.popen.wait(60) != 0
    assert 'use_sim_time:=maybe: expected true or false' in bad.text()
