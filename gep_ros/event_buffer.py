"""The per-camera event history that windows are cut from: bounded, ordered enough, resettable.

Decoded packets arrive as event arrays in roughly increasing time. The buffer keeps them as
chunks, so adding is O(1) and cutting a window touches only the chunks that overlap it.
Memory is bounded twice: by age (`keep_ns` behind the newest event) and by count
(`max_events`, the oldest chunks are dropped first and counted). Packets a little out of
order (up to `reorder_ns` behind the newest event) are accepted; events older than that are
dropped and counted, since their windows may already be gone.
"""

from collections import Counter, deque

import numpy as np

from .wire.events import concat_events
from .wire.kernels import time_span


class EventBuffer:
    """Bounded event history of one camera; see the module docstring."""

    def __init__(self, max_events, keep_ns, reorder_ns):
        self.max_events = max_events
        self.keep_ns = keep_ns
        self.reorder_ns = reorder_ns
        self.dropped = Counter()  # reason -> events
        self.reset()

    def reset(self):
        self.chunks = deque()  # (t_min, t_max, events)
        self.count = 0
        self.newest = None  # largest event time seen (ns)

    def add(self, events, span=None):
        """Add an event array (EVENT_DTYPE); returns the number of events kept.

        span: the array's (t_min, t_max) where the caller has it (`time_span`).
        """
        if len(events) == 0:
            return 0
        t_min, t_max = time_span(events) if span is None else span
        if self.newest is not None and t_min < self.newest - self.reorder_ns:
            late = events['t'] < self.newest - self.reorder_ns
            self.dropped['late'] += int(late.sum())
            events = events[~late]
            if len(events) == 0:
                return 0
            t_min, t_max = time_span(events)
        self.chunks.append((t_min, t_max, events))
        self.count += len(events)
        self.newest = t_max if self.newest is None else max(self.newest, t_max)
        horizon = self.newest - self.keep_ns
        while self.chunks and self.chunks[0][1] < horizon:
            self.count -= len(self.chunks.popleft()[2])
        while self.count > self.max_events and len(self.chunks) > 1:
            dropped = self.chunks.popleft()[2]
            self.count -= len(dropped)
            self.dropped['overflow'] += len(dropped)
        return len(events)

    def window(self, t0, t1):
        """Return the events with t0 <= t <= t1 (a copy; unsorted only where packets were).

        The chunks are read from the newest back to the first that ends more than
        `reorder_ns` before t0: every chunk before that one ends before t0, since a chunk
        starts at most `reorder_ns` before the end of any chunk added before it.
        """
        parts = []
        for c_min, c_max, events in reversed(self.chunks):
            if c_max < t0 - self.reorder_ns:
                break
            if c_max < t0 or c_min > t1:
                continue
            if c_min >= t0 and c_max <= t1:
                parts.append(events)
            else:
                t = events['t']
                parts.append(events[(t >= t0) & (t <= t1)])
        return concat_events(parts[::-1])

    def last(self, t1, n):
        """Return the last `n` events at or before t1, and the time of the earliest of them."""
        parts, total = [], 0
        for c_min, c_max, events in reversed(self.chunks):
            if c_min > t1:
                continue
            chunk = events if c_max <= t1 else events[events['t'] <= t1]
            parts.append(chunk)
            total += len(chunk)
            if total >= n:
                break
        events = concat_events(parts[::-1])
        if len(events) > n:
            order = np.argsort(events['t'], kind='stable')
            events = events[order[-n:]]
        t0 = int(events['t'].min()) if len(events) else t1
        return events, t0
