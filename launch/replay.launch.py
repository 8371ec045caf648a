"""Replay a ROS 2 bag into the perception node on the robot and record what it publishes.

    ros2 launch gep_ros replay.launch.py bag:=BAG output:=OUT weights:=ARTIFACT

Starts perception.launch.py with use_sim_time true, then, once the node logs that it is
ready (a first TensorRT engine build can take minutes), `ros2 bag play BAG --clock`. Its
outputs and /diagnostics go to `ros2 bag record -o OUT`, on the bag's clock. When the bag
has played, the node's `~/flush` service cuts the windows of frames still waiting for events
and answers once every window is published; then, or after `linger` seconds at most, the
launch shuts everything down (the recorder closes its bag on the way), as it does when the
node exits. ROS 1 bags: use `gep` on a workstation, or convert them (rosbags-convert) first.
"""

import os

from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, EmitEvent, ExecuteProcess,
                            IncludeLaunchDescription, RegisterEventHandler, TimerAction)
from launch.event_handlers import OnProcessExit, OnProcessIO
from launch.events import Shutdown
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitution import Substitution
from launch.substitutions import LaunchConfiguration

from gep_ros.params import NODE_NAME

# What the recorder keeps: every camera's outputs, and the node's diagnostics.
OUTPUTS = '^(/diagnostics|.*/(depth/image|depth/points|segmentation/labels|segmentation/color))$'
# The words of the node's start-up line ('ready: cpu backend on cpu: ..., weights ...').
READY = (b']: ready: ', b' backend on ')
PASS_THROUGH = ('params_file', 'weights', 'backend', 'namespace', 'events_topic',
                'events_type', 'image_topic', 'camera_info_topic')


class FlushService(Substitution):
    """The node's ~/flush service, in the `namespace` given to the launch."""

    def perform(self, context):
        namespace = LaunchConfiguration('namespace').perform(context).strip('/')
        return f'/{namespace}/{NODE_NAME}/flush' if namespace else f'/{NODE_NAME}/flush'


def generate_launch_description():
    arg = LaunchConfiguration
    play = ExecuteProcess(cmd=['ros2', 'bag', 'play', arg('bag'), '--rate', arg('rate'),
                               '--clock'], output='screen')
    record = ExecuteProcess(cmd=['ros2', 'bag', 'record', '-o', arg('output'),
                                 '--use-sim-time', '-e', OUTPUTS], output='screen')
    flush = ExecuteProcess(cmd=['ros2', 'service', 'call', FlushService(),
                                'std_srvs/srv/Trigger'], output='screen')
    started = []

    def on_output(event):
        # Start the bag once, after the first line in which the node says it is ready; the
        # second's wait lets the recorder discover the output topics first.
        if not started and all(word in event.text for word in READY):
            started.append(True)
            return [TimerAction(period=1.0, actions=[play])]
        return None

    perception = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            os.path.join(os.path.dirname(os.path.abspath(__file__)), 'perception.launch.py')),
        launch_arguments=[(name, arg(name)) for name in PASS_THROUGH]
        + [('use_sim_time', 'true')])
    return LaunchDescription([
        DeclareLaunchArgument('bag', description='ROS 2 bag folder (or .db3 / .mcap) to play'),
        DeclareLaunchArgument('output', description='bag folder to record the outputs to '
                                                    '(must not exist yet)'),
        DeclareLaunchArgument('rate', default_value='1.0', description='playback rate'),
        DeclareLaunchArgument('linger', default_value='60.0',
                              description='most seconds to wait after the bag ends for the '
                                          'node to publish its last windows'),
        *[DeclareLaunchArgument(name, default_value='',
                                description='passed to perception.launch.py; empty: as in '
                                            'the parameter file')
          for name in PASS_THROUGH],
        record,
        perception,
        RegisterEventHandler(OnProcessIO(on_stdout=on_output, on_stderr=on_output)),
        RegisterEventHandler(OnProcessExit(target_action=play, on_exit=[flush, TimerAction(
            period=arg('linger'), actions=[EmitEvent(event=Shutdown(
                reason='bag played; the node did not finish within linger'))])])),
        RegisterEventHandler(OnProcessExit(target_action=flush, on_exit=[EmitEvent(
            event=Shutdown(reason='bag played and the node finished'))])),
        # The node gone (a bad parameter, a crash): nothing left to record.
        RegisterEventHandler(OnProcessExit(
            target_action=lambda action: action not in (play, record, flush),
            on_exit=[EmitEvent(event=Shutdown(reason='perception node exited'))])),
    ])
