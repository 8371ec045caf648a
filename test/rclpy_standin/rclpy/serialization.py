"""rclpy.serialization.deserialize_message, with rosbags' typestore underneath."""

from _standin_msgs import from_rosbags, Message

from gep_ros.msgtypes import typestore


def deserialize_message(serialized_message, message_type):
    if not (isinstance(message_type, type) and issubclass(message_type, Message)):
        raise AttributeError(f'{message_type!r} is not a message class')
    if not isinstance(serialized_message, bytes):
        raise TypeError(f'expected bytes, got {type(serialized_message).__name__}')
    obj = typestore().deserialize_cdr(serialized_message, message_type._type)
    return from_rosbags(obj, message_type)
