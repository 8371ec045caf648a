from _standin_msgs import Message, Seq
from std_msgs.msg import Header


class EventPacket(Message):
    _type = 'event_camera_msgs/msg/EventPacket'
    _fields = {'header': Header, 'height': int, 'width': int, 'seq': int, 'time_base': int,
               'encoding': str, 'is_bigendian': bool, 'events': Seq()}
