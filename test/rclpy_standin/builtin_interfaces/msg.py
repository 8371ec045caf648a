from _standin_msgs import Message


class Time(Message):
    _type = 'builtin_interfaces/msg/Time'
    _fields = {'sec': int, 'nanosec': int}
