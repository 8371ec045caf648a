"""rclpy.timer.Timer; `fire` (stand-in) runs one expiry now."""

import time


class Timer:

    def __init__(self, callback, timer_period_ns, clock):
        self.callback = callback
        self.timer_period_ns = timer_period_ns
        self.clock = clock
        self.canceled = False
        self.destroyed = False
        self.fired = 0
        self._next = time.monotonic_ns() + timer_period_ns

    def is_canceled(self):
        return self.canceled

    def cancel(self):
        self.canceled = True

    def fire(self):
        if self.destroyed or self.canceled:
            raise RuntimeError('timer is canceled or destroyed')
        self.fired += 1
        self._next = time.monotonic_ns() + self.timer_period_ns
        self.callback()

    def fire_if_due(self):
        if not (self.destroyed or self.canceled) and time.monotonic_ns() >= self._next:
            self.fire()

    def destroy(self):
        self.destroyed = True
