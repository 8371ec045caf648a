"""Launch test: perception.launch.py starts the node, which answers events with depth.

Needs ROS 2 with launch_testing, dvs_msgs and this package built (`colcon build`, then
`colcon test --packages-select gep_ros` or `launch_test test/test_launch.py`); skipped where
ROS 2 is not installed. The node runs a random-weights gep_tiny on the CPU, in rate mode
(no image topic): a window every 50 ms of event time.
"""

from pathlib import Path
import tempfile
import time
import unittest

import pytest

launch_testing = pytest.importorskip('launch_testing')
rclpy = pytest.importorskip('rclpy')
pytest.importorskip('dvs_msgs')

REPO = Path(__file__).resolve().parents[1]
EVENTS_TOPIC = '/gep_launch_test/events'
DEPTH_TOPIC = '/gep_launch_test/depth/image'
WEIGHTS = Path(tempfile.mkdtemp(prefix='gep_launch_test_')) / 'gep_tiny'
H, W = 48, 64
PERIOD = 50_000_000  # ns of events per message
BASE = time.time_ns() // PERIOD * PERIOD


@pytest.mark.launch_test
def generate_test_description():
    from launch import LaunchDescription
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource
    import launch_testing.actions
    import torch

    from gep_model.artifact import save_artifact
    from gep_model.model import GEPModel
    from gep_model.registry import variant_config
    torch.manual_seed(0)
    save_artifact(GEPModel(variant_config('gep_tiny')), WEIGHTS)
    perception = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(REPO / 'launch' / 'perception.launch.py')),
        launch_arguments={'params_file': str(REPO / 'config' / 'perception.yaml'),
                          'weights': str(WEIGHTS), 'backend': 'cpu',
                          'events_topic': EVENTS_TOPIC}.items())
    return LaunchDescription([perception, launch_testing.actions.ReadyToTest()]), {}


def events_bytes(i, n=5000):
    """Return EventArray bytes of the i-th 50 ms of a random event stream."""
    import numpy as np

    from gep_ros.wire.dvs import encode_event_array
    from gep_ros.wire.events import EVENT_DTYPE
    from gep_ros.wire.std import Header
    rng = np.random.default_rng(i)
    events = np.zeros(n, EVENT_DTYPE)
    events['x'] = rng.integers(0, W, n)
    events['y'] = rng.integers(0, H, n)
    events['t'] = BASE + i * PERIOD + np.sort(rng.integers(0, PERIOD, n))
    events['p'] = rng.integers(0, 2, n)
    return encode_event_array(Header(int(events['t'][-1]), 'gep_launch_test'), H, W, events)


class TestDepthFromEvents(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        rclpy.init()

    @classmethod
    def tearDownClass(cls):
        rclpy.try_shutdown()

    def test_depth_arrives(self, proc_output):
        from dvs_msgs.msg import EventArray
        from sensor_msgs.msg import Image
        proc_output.assertWaitFor('ready: ', timeout=120)
        node = rclpy.create_node('gep_launch_test_probe')
        received = []
        node.create_subscription(Image, DEPTH_TOPIC, received.append, 10)
        publisher = node.create_publisher(EventArray, EVENTS_TOPIC, 10)
        try:
            deadline = time.monotonic() + 60
            i = 0
            while not received and time.monotonic() < deadline:
                publisher.publish(events_bytes(i))  # serialized, as the node publishes
                i += 1
                rclpy.spin_once(node, timeout_sec=0.05)
        finally:
            node.destroy_node()
        self.assertTrue(received, f'no message on {DEPTH_TOPIC} within 60 s')
        depth = received[0]
        self.assertEqual(depth.encoding, '32FC1')
        self.assertEqual((depth.height, depth.width), (H, W))
        self.assertEqual(depth.header.frame_id, 'gep_launch_test')


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):

    def test_node_exits_cleanly(self, proc_info):
        import launch_testing.asserts
        launch_testing.asserts.assertExitCodes(proc_info)
