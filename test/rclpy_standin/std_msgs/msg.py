from _standin_msgs import Message
from builtin_interfaces.msg import Time


class Header(Message):
    _type = 'std_msgs/msg/Header'
    _fields = {'stamp': Time, 'frame_id': str}
