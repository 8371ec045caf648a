"""rclpy.parameter.Parameter: a name, a type and a value that agree (as in rclpy)."""

import array
from enum import Enum


class Parameter:

    class Type(Enum):
        NOT_SET = 0
        BOOL = 1
        INTEGER = 2
        DOUBLE = 3
        STRING = 4
        BYTE_ARRAY = 5
        BOOL_ARRAY = 6
        INTEGER_ARRAY = 7
        DOUBLE_ARRAY = 8
        STRING_ARRAY = 9

        @classmethod
        def from_parameter_value(cls, value):
            if value is None:
                return cls.NOT_SET
            for kind, name in ((bool, 'BOOL'), (int, 'INTEGER'), (float, 'DOUBLE'),
                               (str, 'STRING')):
                if isinstance(value, kind):
                    return cls[name]
            if isinstance(value, (list, tuple, array.array)):
                for kind, name in ((bytes, 'BYTE_ARRAY'), (bool, 'BOOL_ARRAY'),
                                   (int, 'INTEGER_ARRAY'), (float, 'DOUBLE_ARRAY'),
                                   (str, 'STRING_ARRAY')):
                    if all(isinstance(v, kind) for v in value):
                        return cls[name]
                raise TypeError('The given value is not a list of one of the allowed types'
                                f" '{value}'.")
            raise TypeError(f"The given value is not one of the allowed types '{value}'.")

        def check(self, value):
            if self is Parameter.Type.NOT_SET:
                return value is None
            try:
                return Parameter.Type.from_parameter_value(value) is self or (
                    self.name.endswith('_ARRAY') and len(value) == 0)
            except TypeError:
                return False

    def __init__(self, name, type_=None, value=None):
        if type_ is None:
            type_ = Parameter.Type.from_parameter_value(value)
        if not isinstance(type_, Parameter.Type):
            raise TypeError(f"type must be an instance of '{Parameter.Type!r}'")
        if not type_.check(value):
            raise ValueError(f"Type '{type_}' and value '{value}' do not agree")
        self._type_ = type_
        self._name = name
        self._value = value

    @property
    def name(self):
        return self._name

    @property
    def type_(self):
        return self._type_

    @property
    def value(self):
        return self._value
