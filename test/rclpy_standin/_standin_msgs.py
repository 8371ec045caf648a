"""Message classes of the stand-in: typed fields checked on assignment, as rosidl's are.

Each class names its ROS type (`_type`, e.g. 'sensor_msgs/msg/Image') so that
rclpy.serialization.deserialize_message can use rosbags' typestore underneath.
"""

import array

import numpy as np

SEQUENCES = (list, tuple, bytes, bytearray, array.array, np.ndarray)


class Seq:
    """A sequence field; `item` is a Message class, or None for primitives."""

    def __init__(self, item=None):
        self.item = item


def _default(kind):
    if isinstance(kind, Seq):
        return []
    if isinstance(kind, type) and issubclass(kind, Message):
        return kind()
    return {int: 0, float: 0.0, bool: False, str: '', bytes: b'\x00'}[kind]


def _check(cls, name, kind, value):
    if isinstance(kind, Seq):
        ok = isinstance(value, SEQUENCES) and (
            kind.item is None or all(isinstance(v, kind.item) for v in value))
    elif kind is bytes:
        ok = isinstance(value, bytes) and len(value) == 1
    elif kind is int:
        ok = isinstance(value, int)
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise AssertionError(f"The '{name}' field of {cls.__name__} must be "
                             f'{getattr(kind, "__name__", "a sequence")}, got {value!r}')


class Message:
    """Base of the stand-in messages: keyword construction, typed attributes, equality."""

    _type = ''
    _fields = {}  # name -> int, float, bool, str, bytes (a ROS byte), a Message class, Seq

    def __init__(self, **kwargs):
        unknown = set(kwargs) - set(self._fields)
        assert not unknown, f'Invalid arguments passed to constructor: {sorted(unknown)}'
        for name, kind in self._fields.items():
            setattr(self, name, kwargs[name] if name in kwargs else _default(kind))

    def __setattr__(self, name, value):
        if name not in self._fields:
            raise AttributeError(f'{type(self).__name__} has no field {name!r}')
        _check(type(self), name, self._fields[name], value)
        object.__setattr__(self, name, value)

    def __eq__(self, other):
        if type(other) is not type(self):
            return False
        return all(np.array_equal(getattr(self, n), getattr(other, n))
                   if isinstance(getattr(self, n), np.ndarray) else
                   getattr(self, n) == getattr(other, n) for n in self._fields)

    def __repr__(self):
        fields = ', '.join(f'{n}={getattr(self, n)!r}' for n in self._fields)
        return f'{type(self).__name__}({fields})'


def from_rosbags(obj, cls):
    """Convert a rosbags message object into the stand-in class `cls`."""
    values = {}
    for name, kind in cls._fields.items():
        value = getattr(obj, name)
        if isinstance(kind, Seq) and kind.item is not None:
            value = [from_rosbags(v, kind.item) for v in value]
        elif isinstance(kind, type) and issubclass(kind, Message):
            value = from_rosbags(value, kind)
        elif kind is bytes:
            value = bytes([value])
        values[name] = value
    return cls(**values)
