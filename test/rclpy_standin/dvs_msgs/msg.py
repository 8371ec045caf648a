from _standin_msgs import Message, Seq
from builtin_interfaces.msg import Time
from std_msgs.msg import Header


class Event(Message):
    _type = 'dvs_msgs/msg/Event'
    _fields = {'x': int, 'y': int, 'ts': Time, 'polarity': bool}


class EventArray(Message):
    _type = 'dvs_msgs/msg/EventArray'
    _fields = {'header': Header, 'height': int, 'width': int, 'events': Seq(Event)}
