from _standin_msgs import Message, Seq


class ParameterDescriptor(Message):
    _type = 'rcl_interfaces/msg/ParameterDescriptor'
    _fields = {'name': str, 'type': int, 'description': str, 'additional_constraints': str,
               'read_only': bool, 'dynamic_typing': bool, 'floating_point_range': Seq(),
               'integer_range': Seq()}
