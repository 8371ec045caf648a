"""rclpy.time.Time: integer nanoseconds on a clock, to_msg()."""  # noqa: A005

from builtin_interfaces.msg import Time as TimeMsg


class Time:

    def __init__(self, *, seconds=0, nanoseconds=0, clock_type=None):
        self._nanoseconds = int(seconds * 1_000_000_000) + int(nanoseconds)
        self.clock_type = clock_type

    @property
    def nanoseconds(self):
        return self._nanoseconds

    def seconds_nanoseconds(self):
        return divmod(self._nanoseconds, 1_000_000_000)

    def to_msg(self):
        sec, nanosec = self.seconds_nanoseconds()
        return TimeMsg(sec=sec, nanosec=nanosec)
