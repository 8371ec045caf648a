"""Start the gep_ros perception node.

    ros2 launch gep_ros perception.launch.py weights:=ARTIFACT events_topic:=/dvs/events

The parameter file (default: the installed share/gep_ros/config/perception.yaml) is read
here and handed to the node as a parameter dictionary, which launch_ros writes out for this
node's full name: so the file's `perception_node:` section applies under any namespace
(given to --params-file directly, it would match /perception_node only). Every argument
left empty keeps the file's value; the topic arguments configure camera `cam0`.
"""

import os
from typing import List

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
import yaml

from gep_ros.params import flatten

NODE = 'perception_node'
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
}


def file_parameters(path):
    """Return {dotted name: value} of the node's section of a ROS 2 parameter file."""
    with open(path) as f:
        doc = yaml.safe_load(f) or {}
    section = doc.get(NODE) or doc.get('/**') or {}
    if not isinstance(section, dict) or 'ros__parameters' not in section:
        raise RuntimeError(f'{path}: no {NODE}: ros__parameters: section')
    return flatten(section['ros__parameters'] or {})


def _typed(value):
    # launch_ros reads plain strings as YAML ('1.0' would become a float): keep them strings.
    if isinstance(value, str):
        return ParameterValue(value, value_type=str)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return ParameterValue(value, value_type=List[str])
    return value


def launch_setup(context):
    args = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    params_file = args['params_file'] or os.path.join(
        get_package_share_directory('gep_ros'), 'config', 'perception.yaml')
    params = file_parameters(params_file)
    for name, (parameter, _) in ARGUMENTS.items():
        if parameter and args[name]:
            params[parameter] = args[name]
    params['use_sim_time'] = LaunchConfiguration('use_sim_time').perform(context).lower() in (
        'true', '1')
    return [Node(package='gep_ros', executable='perception_node', name=NODE,
                 namespace=args['namespace'], output='screen',
                 parameters=[{k: _typed(v) for k, v in params.items()}])]


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value='',
                               description=f'{text}; empty: as in the parameter file'
                               if parameter else text)
         for name, (parameter, text) in ARGUMENTS.items()]
        + [DeclareLaunchArgument('use_sim_time', default_value='false',
                                 description='use /clock (true when replaying a bag)'),
           OpaqueFunction(function=launch_setup)])
