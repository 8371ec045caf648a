"""rclpy.qos: QoSProfile and the policy enums the node uses (values as in rmw/types.h)."""

from enum import IntEnum


class HistoryPolicy(IntEnum):
    SYSTEM_DEFAULT = 0
    KEEP_LAST = 1
    KEEP_ALL = 2
    UNKNOWN = 3


class ReliabilityPolicy(IntEnum):
    SYSTEM_DEFAULT = 0
    RELIABLE = 1
    BEST_EFFORT = 2
    UNKNOWN = 3


class DurabilityPolicy(IntEnum):
    SYSTEM_DEFAULT = 0
    TRANSIENT_LOCAL = 1
    VOLATILE = 2
    UNKNOWN = 3


class InvalidQoSProfileException(Exception):
    pass


class QoSProfile:
    """History (KEEP_LAST needs a depth), depth, reliability, durability; rclpy's defaults."""

    _keys = ('history', 'depth', 'reliability', 'durability')

    def __init__(self, **kwargs):
        assert all(key in self._keys for key in kwargs), \
            f'Invalid arguments passed to constructor: {kwargs.keys()!r}'
        if 'history' not in kwargs:
            if 'depth' not in kwargs:
                raise InvalidQoSProfileException('History and/or depth settings are required.')
            kwargs['history'] = HistoryPolicy.KEEP_LAST
        self.history = HistoryPolicy(kwargs['history'])
        if self.history == HistoryPolicy.KEEP_LAST and 'depth' not in kwargs:
            raise InvalidQoSProfileException('History set to KEEP_LAST without a depth setting.')
        self.depth = kwargs.get('depth', 10)
        if not isinstance(self.depth, int) or isinstance(self.depth, bool) or self.depth < 0:
            raise TypeError(f'depth must be a non-negative int, got {self.depth!r}')
        self.reliability = ReliabilityPolicy(kwargs.get('reliability',
                                                        ReliabilityPolicy.RELIABLE))
        self.durability = DurabilityPolicy(kwargs.get('durability', DurabilityPolicy.VOLATILE))

    def __eq__(self, other):
        return isinstance(other, QoSProfile) and all(
            getattr(self, k) == getattr(other, k) for k in self._keys)
