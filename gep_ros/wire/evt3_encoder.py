"""EVT3 encoder: events to Prophesee EVT 3.0 words, for sample bags, tests and benchmarks.

Cameras produce EVT3 themselves; we encode only to build recordings with a known ground
truth. Each event becomes an EVT_ADDR_X word (x, polarity), preceded by EVT_TIME_HIGH,
EVT_TIME_LOW and EVT_ADDR_Y words whenever the 12-bit time halves or the row change. The
state carries across packets like a camera stream, so packet boundaries fall anywhere.
"""

import numpy as np

ADDR_Y, ADDR_X, TIME_LOW, TIME_HIGH = 0x0, 0x2, 0x6, 0x8


class Evt3Encoder:
    """Stateful encoder for one stream; `encode(events)` returns the packet's bytes.

    Event times are sensor time in nanoseconds, encoded at microsecond resolution; x and y
    must be below 2048 (11 bits), times must not decrease.
    """

    def __init__(self):
        self.reset()

    def reset(self):
        self._high = -1  # last TIME_HIGH payload written (12 bits), -1 = none yet
        self._low = -1
        self._y = -1

    def encode(self, events):
        n = len(events)
        if n == 0:
            return b''
        x = events['x'].astype(np.uint16)
        y = events['y'].astype(np.int64)
        if x.max() >= 2048 or y.max() >= 2048:
            raise ValueError('EVT3 addresses are 11 bits: x and y must be below 2048')
        us = events['t'].astype(np.int64) // 1000
        if n > 1 and np.any(np.diff(us) < 0):
            raise ValueError('EVT3 encoding needs events sorted by time')
        high = (us >> 12) & 0xFFF
        low = us & 0xFFF
        new_high = high != np.concatenate(([self._high], high[:-1]))
        new_low = new_high | (low != np.concatenate(([self._low], low[:-1])))
        new_y = new_high | (y != np.concatenate(([self._y], y[:-1])))
        # Words per event: optional TIME_HIGH, TIME_LOW, ADDR_Y, then the ADDR_X itself.
        count = 1 + new_high.astype(np.int64) + new_low + new_y
        end = np.cumsum(count)
        words = np.empty(end[-1], np.uint16)
        words[end - 1] = (ADDR_X << 12) | ((events['p'] != 0).astype(np.uint16) << 11) | x
        pos_y = end - 2
        words[pos_y[new_y]] = (ADDR_Y << 12) | y[new_y]
        pos_low = pos_y - new_y
        words[pos_low[new_low]] = (TIME_LOW << 12) | low[new_low]
        pos_high = pos_low - new_low
        words[pos_high[new_high]] = (TIME_HIGH << 12) | high[new_high]
        self._high, self._low, self._y = int(high[-1]), int(low[-1]), int(y[-1])
        return words.astype('<u2').tobytes()
