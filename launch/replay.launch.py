"""Replay a ROS 2 bag into the perception node on the robot and record what it publishes.

    ros2 launch gep_ros replay.launch.py bag:=BAG output:=OUT weights:=ARTIFACT

Starts perception.launch.py with use_sim_time true, then, once the node logs that it is
ready (a first TensorRT engine build can take minutes), `ros2 bag play BAG --clock`. Its
outputs and /diagnostics go to `ros2 bag record -o OUT`, on the bag's clock. When the bag
has played, the launch waits `linger` seconds for the last windows and shuts everything
down (the recorder closes its bag on the way), as it does when the node exits. ROS 1
bags: use `gep` on a workstation, or convert them (rosbags-convert) first.
"""

import os

from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, EmitEvent, ExecuteProcess,
                            IncludeLaunchDescription, RegisterEventHandler, TimerAction)
from launch.event_handlers import OnProcessExit, OnProcessIO
from launch.events import Shutdown
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration

# What the recorder keeps: every camera's outputs, and the node's diagnostics.
OUTPUTS = '^(/diagnostics|.*/(depth/image|depth/points|segmentation/labels|segmentation/color))$'
# The words of the node's start-up line ('ready: cpu backend on cpu: ..., weights ...').
READY = (b']: ready: ', b' backend on ')
PASS_THROUGH = ('params_file', 'weights', 'backend', 'namespace', 'events_topic',
                'events_type', 'image_topic', 'camera_info_topic')


def generate_launch_description():
    arg = LaunchConfiguration
    play = ExecuteProcess(cmd=['ros2', 'bag', 'play', arg('bag'), '--rate', arg('rate'),
                               '--clock'], output='screen')
    record = ExecuteProcess(cmd=['ros2', 'bag', 'record', '-o', arg('output'),
                                 '--use-sim-time', '-e', OUTPUTS], output='screen')
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
        DeclareLaunchArgument('linger', default_value='3.0',
                              description='seconds to wait after the bag ends'),
        *[DeclareLaunchArgument(name, default_value='',
                                description='passed to perception.launch.py; empty: as in '
                                            'the parameter file')
          for name in PASS_THROUGH],
        record,
        perception,
        RegisterEventHandler(OnProcessIO(on_stdout=on_output, on_stderr=on_output)),
        RegisterEventHandler(OnProcessExit(target_action=play, on_exit=[TimerAction(
            period=arg('linger'), actions=[EmitEvent(event=Shutdown(reason='bag played'))])])),
        # The node gone (a bad parameter, a crash): nothing left to record.
        RegisterEventHandler(OnProcessExit(
            target_action=lambda action: action is not play and action is not record,
            on_exit=[EmitEvent(event=Shutdown(reason='perception node exited'))])),
    ])
