"""The perception node's rclpy shell, driven through the rclpy stand-in in rclpy_standin/.

The stand-in goes on sys.path only inside the `ros` fixture, and it and the node module
leave sys.modules afterwards (any real rclpy imported before is put back), so these tests
run the same where ROS 2 is installed.
"""

import importlib
import os
from pathlib import Path
import subprocess
import sys
from types import SimpleNamespace

from conftest import REPO
import numpy as np
import pytest

from gep_model.artifact import read_meta, save_artifact
from gep_model.model import GEPModel
from gep_model.registry import variant_config
from gep_model.runtime import available_backends
from gep_ros.params import CAMERA_PARAMS, make_params, PARAMS
from gep_ros.stats import STAGES
from gep_ros.wire.dvs import encode_event_array
from gep_ros.wire.events import EVENT_DTYPE
from gep_ros.wire.image import decode_image, encode_image
from gep_ros.wire.std import Header

STANDIN = Path(__file__).resolve().parent / 'rclpy_standin'
STANDIN_MODULES = {p.stem for p in STANDIN.iterdir() if not p.name.startswith('__')}
NODE_MODULE = 'gep_ros.perception_node'
BASE = 1_700_000_000_000_000_000
PERIOD = 50_000_000  # ns between frames
H, W = 48, 64


def _standin_owned(name):
    return name.split('.')[0] in STANDIN_MODULES or name == NODE_MODULE


@pytest.fixture
def ros():
    """Put the rclpy stand-in first on sys.path, initialise it, import the node module."""
    import gep_ros
    saved = {n: m for n, m in sys.modules.items() if _standin_owned(n)}
    for name in saved:
        del sys.modules[name]
    sys.path.insert(0, str(STANDIN))
    try:
        import rclpy
        import standin
        standin.reset()
        rclpy.init(args=[])
        yield SimpleNamespace(rclpy=rclpy, standin=standin,
                              node=importlib.import_module(NODE_MODULE),
                              msgs=importlib.import_module('sensor_msgs.msg'),
                              diag=importlib.import_module('diagnostic_msgs.msg'),
                              qos=importlib.import_module('rclpy.qos'),
                              Parameter=importlib.import_module('rclpy.parameter').Parameter)
    finally:
        if 'rclpy' in sys.modules:
            sys.modules['rclpy'].try_shutdown()
        sys.path.remove(str(STANDIN))
        for name in [n for n in sys.modules if _standin_owned(n)]:
            del sys.modules[name]
        if hasattr(gep_ros, 'perception_node'):
            delattr(gep_ros, 'perception_node')
        sys.modules.update(saved)
        if NODE_MODULE in saved:
            gep_ros.perception_node = saved[NODE_MODULE]


@pytest.fixture(scope='module')
def artifact(tmp_path_factory):
    folder = tmp_path_factory.mktemp('node') / 'gep_tiny'
    save_artifact(GEPModel(variant_config('gep_tiny')), folder)
    return folder


@pytest.fixture
def make_node(ros, artifact):
    """Start PerceptionNode with a tiny artifact, one camera with events and frames."""
    nodes = []

    def make(**overrides):
        values = {'weights': str(artifact), 'backend': 'cpu', 'max_wait_ms': 0.0,
                  'cam0.image_topic': '/dvs/image_raw'}
        values.update(overrides)
        node = ros.node.PerceptionNode(
            parameter_overrides=[ros.Parameter(k, value=v) for k, v in values.items()])
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.close()
        node.destroy_node()


def events_bytes(i, n=2000, seed=0):
    """Return the EventArray bytes of the i-th 50 ms slice."""
    rng = np.random.default_rng(seed + i)
    events = np.zeros(n, EVENT_DTYPE)
    events['x'] = rng.integers(0, W, n)
    events['y'] = rng.integers(0, H, n)
    events['t'] = BASE + i * PERIOD + np.sort(rng.integers(0, PERIOD, n))
    events['p'] = rng.integers(0, 2, n)
    return encode_event_array(Header(BASE + (i + 1) * PERIOD, 'dvs'), H, W, events)


def image_header(i):
    return Header(BASE + (i + 1) * PERIOD - 1, 'dvs_frame')


def image_bytes(i):
    return encode_image(image_header(i), np.full((H, W), 40 * i, np.uint8), 'mono8')


def by_topic(entities):
    return {e.topic_name: e for e in entities}


def feed(node, frames=3):
    subs = by_topic(node.subscriptions)
    for i in range(frames):
        subs['/dvs/events'].deliver(events_bytes(i))
        subs['/dvs/image_raw'].deliver(image_bytes(i))
    assert node.pipeline.flush(timeout=60)


def diagnostics(node):
    """Fire the diagnostics timer once; return its one status and its values as a dict."""
    timer, = [t for t in node.timers if t.callback == node._diagnostics]
    publisher = by_topic(node.publishers)['/diagnostics']
    before = len(publisher.sent)
    timer.fire()
    assert len(publisher.sent) == before + 1
    status, = publisher.sent[-1].status
    return status, {kv.key: kv.value for kv in status.values}


def test_every_parameter_declared_with_default_and_description(ros, make_node):
    node = make_node(**{'cameras': ['cam0', 'cam1'], 'cam1.events_topic': '/ec/events',
                        'cam1.events_type': 'event_camera'})
    overridden = {'weights', 'backend', 'max_wait_ms', 'cameras'}
    for name, (default, description) in PARAMS.items():
        descriptor = node.describe_parameter(name)
        assert descriptor.description == description
        assert descriptor.read_only, name
        if name not in overridden:
            assert node.get_parameter(name).value == default, name
    for cam in ('cam0', 'cam1'):
        for key, (default, description) in CAMERA_PARAMS.items():
            assert description in node.describe_parameter(f'{cam}.{key}').description
    assert node.get_parameter('cam1.image_topic').value == ''
    subs = by_topic(node.subscriptions)
    assert subs['/ec/events'].msg_type.__name__ == 'EventPacket'
    assert '/ec/depth/image' in by_topic(node.publishers)


@pytest.mark.parametrize('reliability,depth', [('best_effort', 10), ('reliable', 3)])
def test_subscriptions_raw_with_types_and_qos(ros, make_node, reliability, depth):
    node = make_node(**{'qos.reliability': reliability, 'qos.depth': depth})
    subs = by_topic(node.subscriptions)
    assert sorted(subs) == ['/dvs/events', '/dvs/image_raw']
    assert subs['/dvs/events'].msg_type.__name__ == 'EventArray'
    assert subs['/dvs/events'].msg_type.__module__ == 'dvs_msgs.msg'
    assert subs['/dvs/image_raw'].msg_type is ros.msgs.Image
    policy = {'best_effort': ros.qos.ReliabilityPolicy.BEST_EFFORT,
              'reliable': ros.qos.ReliabilityPolicy.RELIABLE}[reliability]
    for sub in subs.values():
        assert sub.raw
        assert sub.qos_profile.reliability == policy
        assert sub.qos_profile.depth == depth
        assert sub.qos_profile.history == ros.qos.HistoryPolicy.KEEP_LAST
    pubs = by_topic(node.publishers)
    assert set(pubs) == {'/dvs/depth/image', '/dvs/segmentation/labels',
                         '/dvs/segmentation/color', '/diagnostics'}
    assert pubs['/dvs/depth/image'].msg_type is ros.msgs.Image
    assert pubs['/dvs/depth/image'].qos_profile.depth == depth
    assert pubs['/dvs/depth/image'].qos_profile.reliability == \
        ros.qos.ReliabilityPolicy.RELIABLE  # serves reliable subscribers too (rviz)
    assert pubs['/diagnostics'].msg_type is ros.diag.DiagnosticArray


def test_outputs_published_as_bytes_with_the_input_header(ros, make_node):
    node = make_node()
    feed(node)
    pubs = by_topic(node.publishers)
    encodings = {'/dvs/depth/image': '32FC1', '/dvs/segmentation/labels': 'mono8',
                 '/dvs/segmentation/color': 'rgb8'}
    for topic, encoding in encodings.items():
        sent = pubs[topic].sent
        assert len(sent) == 3 and all(isinstance(m, bytes) for m in sent)
        images = [decode_image(m) for m in sent]
        assert [im.header for im in images] == [image_header(i) for i in range(3)]
        assert all(im.encoding == encoding and im.array.shape[:2] == (H, W) for im in images)
    assert node.raw_publish is True
    assert all(p.refused == 0 for p in node.publishers)


def test_malformed_message_is_rejected_and_reported(ros, make_node):
    node = make_node()
    subs = by_topic(node.subscriptions)
    subs['/dvs/events'].deliver(b'\x00\x01\x00\x00garbage')
    subs['/dvs/image_raw'].deliver(b'')
    feed(node, frames=2)  # the good messages still go through
    assert len(by_topic(node.publishers)['/dvs/depth/image'].sent) == 2
    status, values = diagnostics(node)
    assert status.level == ros.diag.DiagnosticStatus.WARN
    assert '2 rejected' in status.message
    rejected = {k: v for k, v in values.items() if k.startswith('rejected ')}
    assert len(rejected) == 2 and any(k.startswith('rejected /dvs/events: ') for k in rejected)
    # the pipeline's one-line warning reaches the ROS log
    assert any(s == 'WARN' and 'rejected a message on /dvs/events' in m
               for s, _, m in ros.standin.log_records)
    status, _ = diagnostics(node)  # nothing new in this second
    assert status.level == ros.diag.DiagnosticStatus.OK


def test_diagnostics_once_per_tick_with_rates_and_latency(ros, make_node):
    node = make_node()
    timer, = [t for t in node.timers if t.callback == node._diagnostics]
    assert timer.timer_period_ns == 1_000_000_000
    assert timer.clock.clock_type.name == 'STEADY_TIME'
    feed(node)
    status, values = diagnostics(node)
    assert status.name == 'gep_ros: perception'
    assert status.hardware_id == node.digest == read_meta(node.params['weights'])['digest']
    assert status.level == ros.diag.DiagnosticStatus.OK
    assert float(values['input /dvs/events rate_hz']) > 0
    assert values['input /dvs/image_raw messages'] == '3'
    assert values['windows'] == '3'
    assert values['output /dvs/depth/image messages'] == '3'
    assert values['backend'] == 'cpu'
    for stage in STAGES:
        for q in ('p50', 'p95', 'max'):
            assert float(values[f'latency_ms {stage} {q}']) >= 0
    assert not any(k.startswith(('dropped', 'rejected')) for k in values)
    status, values = diagnostics(node)
    assert float(values['input /dvs/events rate_hz']) == 0  # none in the last tick
    assert len(by_topic(node.publishers)['/diagnostics'].sent) == 2


def test_diagnostics_error_when_inference_fails(ros, make_node):
    node = make_node()

    def broken(*args, **kwargs):
        raise RuntimeError('CUDA error: an illegal memory access was encountered')
    node.pipeline.runtime.infer = broken
    feed(node, frames=1)
    status, values = diagnostics(node)
    assert status.level == ros.diag.DiagnosticStatus.ERROR
    assert 'illegal memory access' in status.message
    assert values['dropped inference failed: RuntimeError'] == '1'
    status, _ = diagnostics(node)
    assert status.level == ros.diag.DiagnosticStatus.OK


def test_rclpy_without_bytes_publish_gets_deserialized_messages(ros, make_node):
    ros.standin.publish_accepts_bytes = False
    node = make_node()
    feed(node)
    assert node.raw_publish is False
    assert sum(p.refused for p in node.publishers) == 1  # tried bytes once, then decided
    depth = by_topic(node.publishers)['/dvs/depth/image'].sent
    assert len(depth) == 3 and all(isinstance(m, ros.msgs.Image) for m in depth)
    for i, msg in enumerate(depth):
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        assert (stamp, msg.header.frame_id) == (image_header(i).stamp_ns, 'dvs_frame')
        assert (msg.encoding, msg.height, msg.width) == ('32FC1', H, W)
        assert np.frombuffer(bytes(msg.data), np.float32).size == H * W


def test_empty_weights_run_a_random_gep_tiny_with_a_warning(ros, make_node):
    node = make_node(weights='')
    folder = Path(node.random_weights.name)
    assert folder.is_dir() and node.digest
    assert any(s == 'WARN' and 'meaningless' in m for s, _, m in ros.standin.log_records)
    feed(node, frames=1)
    assert len(by_topic(node.publishers)['/dvs/depth/image'].sent) == 1
    node.close()
    assert not folder.exists()


def _unavailable_backend():
    missing = [name for name, (ok, _) in available_backends().items() if not ok]
    return missing[0] if missing else None


@pytest.mark.parametrize('args,expect', [
    (['-p', 'window.duration_ms:=50'], 'window.duration_ms: Trying to set parameter'),
    (['-p', 'weights:=/no/such/folder'], 'weights: /no/such/folder: no such artifact folder'),
    (['-p', 'cam0.events_type:=dvs2'], "cam0.events_type: 'dvs2' is not dvs or event_camera"),
    (['-p', 'backend:=UNAVAILABLE'], 'backend: backend UNAVAILABLE is not available here'),
])
def test_bad_parameter_is_one_error_line(ros, artifact, capsys, args, expect):
    if 'backend:=UNAVAILABLE' in args:
        backend = _unavailable_backend()
        if backend is None:
            pytest.skip('every backend is available on this machine')
        args = ['-p', f'backend:={backend}']
        expect = expect.replace('UNAVAILABLE', backend)
    ros.rclpy.try_shutdown()  # main() initialises rclpy itself
    capsys.readouterr()
    argv = ['--ros-args', '-p', f'weights:={artifact}', '-p', 'backend:=cpu'] + args
    assert ros.node.main(argv) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith('[ERROR]') and expect in lines[0], lines[0]
    assert not ros.rclpy.ok()


def test_bad_parameter_exits_nonzero_without_traceback(artifact):
    path = [str(STANDIN), str(REPO)] + ([os.environ['PYTHONPATH']]
                                        if 'PYTHONPATH' in os.environ else [])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))  # the stand-in shadows ROS 2
    result = subprocess.run(
        [sys.executable, '-m', NODE_MODULE, '--ros-args', '-p', f'weights:={artifact}',
         '-p', 'backend:=cpu', '-p', 'window.mode:=sideways'],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "window.mode: 'sideways' is not one of auto, image, rate" in lines[0]
    assert 'Traceback' not in result.stderr + result.stdout


@pytest.mark.parametrize('how', ['KeyboardInterrupt', 'ExternalShutdownException'])
def test_main_shuts_down_cleanly_on_ctrl_c(ros, artifact, how):
    """Ctrl-C: KeyboardInterrupt out of spin (Humble), or a shut-down context (Jazzy)."""
    seen = []

    def turn(node):
        if not seen:
            seen.append(node)
            feed(node, frames=2)
            return
        if how == 'KeyboardInterrupt':
            raise KeyboardInterrupt
        ros.rclpy.shutdown()  # what rclpy's SIGINT handler does on Jazzy

    ros.standin.spin_handler = turn
    ros.rclpy.try_shutdown()
    argv = ['--ros-args', '-p', f'weights:={artifact}', '-p', 'backend:=cpu',
            '-p', 'cam0.image_topic:=/dvs/image_raw']
    assert ros.node.main(argv) == 0
    node, = seen
    assert node.destroyed and not node.pipeline.worker.is_alive()
    assert not ros.rclpy.ok()
    assert not any(s in ('ERROR', 'FATAL') for s, _, _ in ros.standin.log_records)


def test_shipped_parameter_file_fits_the_declared_types(ros, artifact):
    """config/perception.yaml through --params-file: no type is refused, values arrive."""
    ros.rclpy.try_shutdown()
    ros.rclpy.init(args=['--ros-args', '--params-file', str(REPO / 'config' / 'perception.yaml'),
                         '-p', f'weights:={artifact}', '-p', 'backend:=cpu'])
    node = ros.node.PerceptionNode()
    try:
        assert node.params.values == dict(
            make_params({'weights': str(artifact), 'backend': 'cpu'}).values)
    finally:
        node.close()
        node.destroy_node()


def test_missing_message_package_is_one_error_line(ros, artifact, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, 'event_camera_msgs', None)  # not installed
    ros.rclpy.try_shutdown()
    capsys.readouterr()
    argv = ['--ros-args', '-p', f'weights:={artifact}', '-p', 'backend:=cpu',
            '-p', 'cam0.events_type:=event_camera']
    assert ros.node.main(argv) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and 'needs the ROS 2 package event_camera_msgs' in lines[0], lines
