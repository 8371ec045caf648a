"""Start the gep_ros perception node.

    ros2 launch gep_ros perception.launch.py weights:=ARTIFACT events_topic:=dvs/events

The parameter file (default: the installed share/gep_ros/config/perception.yaml) goes to the
node as it is, as `ros2 run gep_ros perception_node --ros-args --params-file FILE` would give
it: its sections apply by ROS 2's rules (`/**`, `/perception_node`, `/**/perception_node`,
`/robot1/perception_node`), and the shipped file's `/**/perception_node` applies under any
namespace. A parameter the node does not know stops it with one error line. Arguments given
here override the file, arguments left empty keep its values (use_sim_time included); the
topic arguments configure camera `cam0`. Relative topic names resolve in the node's
namespace, so `namespace:=robot1` moves inputs and outputs together. The launch ends when
the node exits.
"""

from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, EmitEvent, OpaqueFunction,
                            RegisterEventHandler)
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from gep_ros.params import NODE_NAME

# argument: (parameter it overrides or None, description)
ARGUMENTS = {
    'params_file': (None, 'ROS 2 parameter file; empty: share/gep_ros/config/perception.yaml'),
    'weights': ('weights', 'artifact folder (model.safetensors + model.json)'),
    'backend': ('backend', 'auto, tensorrt, cuda, cpu or onnxruntime'),
    'namespace': (None, 'namespace of the node, and of relative topic names'),
    'events_topic': ('cam0.events_topic', 'cam0 events topic'),
    'events_type': ('cam0.events_type', 'cam0 events message: dvs (dvs_msgs/EventArray) or '
                                        'event_camera (event_camera_msgs/EventPacket)'),
    'image_topic': ('cam0.image_topic', 'cam0 sensor_msgs/Image topic'),
    'camera_info_topic': ('cam0.camera_info_topic', 'cam0 sensor_msgs/CameraInfo topic'),
    'use_sim_time': ('use_sim_time', 'true: use /clock (when playing a bag)'),
}
TRUE, FALSE = ('true', 'True', '1'), ('false', 'False', '0')


def overrides(args):
    """Return the parameters the given (non-empty) arguments set, typed for launch_ros."""
    out = {}
    for name, (parameter, _) in ARGUMENTS.items():
        value = args[name]
        if not parameter or not value:
            continue
        if name == 'use_sim_time':
            if value not in TRUE + FALSE:
                raise ValueError(f'use_sim_time:={value}: expected true or false')
            out[parameter] = value in TRUE
        else:  # launch_ros would read '1.0' as a number: keep strings strings
            out[parameter] = ParameterValue(value, value_type=str)
    return out


def launch_setup(context):
    args = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    params_file = args['params_file'] or FindPackageShare('gep_ros').perform(context) + \
        '/config/perception.yaml'
    node = Node(package='gep_ros', executable='perception_node', name=NODE_NAME,
                namespace=args['namespace'], output='screen',
                parameters=[params_file, overrides(args)])
    return [node, RegisterEventHandler(OnProcessExit(
        target_action=node, on_exit=[EmitEvent(event=Shutdown(reason='perception node exited'))]))]


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value='',
                               description=f'{text}; empty: as in the parameter file'
                               if parameter else text)
         for name, (parameter, text) in ARGUMENTS.items()]
        + [OpaqueFunction(function=launch_setup)])
