from _standin_msgs import Message, Seq
from std_msgs.msg import Header


class KeyValue(Message):
    _type = 'diagnostic_msgs/msg/KeyValue'
    _fields = {'key': str, 'value': str}


class DiagnosticStatus(Message):
    # `byte` constants are one-byte bytes in ROS 2 Python, as here.
    OK = b'\x00'
    WARN = b'\x01'
    ERROR = b'\x02'
    STALE = b'\x03'
    _type = 'diagnostic_msgs/msg/DiagnosticStatus'
    _fields = {'level': bytes, 'name': str, 'message': str, 'hardware_id': str,
               'values': Seq(KeyValue)}


class DiagnosticArray(Message):
    _type = 'diagnostic_msgs/msg/DiagnosticArray'
    _fields = {'header': Header, 'status': Seq(DiagnosticStatus)}
