"""The per-camera event history that windows are cut from: bounded, ordered enough, resettable.

Decoded packets arrive as event arrays in roughly increasing time. The buffer keeps them as
chunks, so adding is O(1) and cutting a window touches only the chunks that overlap it.
Memory is bounded twice: by age (`keep_ns` behind the newest event) and by count
(`max_events`, the oldest chunks are dropped first and counted). Packets a little out of
order (up to `reorder_ns` behind the newest event) are accepted; events older than that are
dropped and counted, since their windows may already be gone.

Chunks are copied as they arrive, one after the other, into segments of SEGMENT_EVENTS
events, so that a window of consecutive chunks is a view of its segment, cut without
copying: the node's feeding thread spent 0.4 to 0.7 ms copying each 50k-event window, on
every window's way to the model. Nothing is written twice into a segment, so windows are
read-only views that stay valid for as long as they are held (and keep their segment
alive); a window whose events do not follow each other in one segment (across two
segments, or packets out of order) is a copy.
"""

from collections import Counter, deque

import numpy as np

from .wire.events import concat_events, copy_events, EVENT_DTYPE
from .wire.kernels import as_records, kernels, time_span

# Events a segment holds: 16 MB of records, resident only as written (about a second of a
# busy DAVIS346, so that few windows span two segments); 4 * max_events where that is less.
SEGMENT_EVENTS = 1 << 20


class EventBuffer:
    """Bounded event history of one camera; see the module docstring."""

    def __init__(self, max_events, keep_ns, reorder_ns):
        self.max_events = max_events
        self.keep_ns = keep_ns
        self.reorder_ns = reorder_ns
        self.dropped = Counter()  # reason -> events
        self.reset()

    def reset(self):
        # (t_min, t_max, events, start, serial, run): events = segment[start:...]; serial
        # counts the chunks added; run is the serial of the first chunk of its run, the
        # chunks that follow each other in one segment and in time (each starting no earlier
        # than the one before ends).
        self.chunks = deque()
        self.count = 0
        self.newest = None  # largest event time seen (ns)
        self._segment, self._used = None, 0  # the segment chunks are copied into, and its fill
        self._serial = 0

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
        view, start = self._store(events)
        run = self._serial
        if self.chunks:
            before = self.chunks[-1]
            if view.base is before[2].base and start == before[3] + len(before[2]) \
                    and t_min >= before[1]:
                run = before[5]
        self.chunks.append((t_min, t_max, view, start, self._serial, run))
        self._serial += 1
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

    def _store(self, events):
        """Copy events after the last chunk in the segment (a new one where they do not fit).

        Returns (view, start): the copy, and where it starts in its segment.
        """
        n = len(events)
        if self._segment is None or self._used + n > len(self._segment):
            # A small buffer (max_events) takes smaller segments: it never holds more.
            size = max(min(SEGMENT_EVENTS, 4 * self.max_events), n)
            self._segment, self._used = np.empty(size, EVENT_DTYPE), 0
        start = self._used
        view = self._segment[start:start + n]
        if events.dtype == EVENT_DTYPE and as_records(events):
            kernels.copy_events(events, view)
        else:
            copy_events(view, events)
        self._used += n
        return view, start

    def window(self, t0, t1):
        """Return the events with t0 <= t <= t1, read-only (unsorted only where packets were).

        A view of the buffer's memory where they lie one after the other in one segment,
        else a copy. The chunks are read from the newest back to the first that ends more
        than `reorder_ns` before t0: every chunk before that one ends before t0, since a
        chunk starts at most `reorder_ns` before the end of any chunk added before it.
        """
        events = self._run_window(t0, t1)
        if events is not None:
            return events
        parts = []
        for chunk in reversed(self.chunks):
            c_min, c_max = chunk[0], chunk[1]
            if c_max < t0 - self.reorder_ns:
                break
            if c_max < t0 or c_min > t1:
                continue
            parts.append(_within(chunk, t0, t1))
        return _joined(parts[::-1])

    def _run_window(self, t0, t1):
        """`window` without looking at every chunk, where one run holds it; else None.

        The newest chunk that starts by t1, found from the newest back (newer ones start
        after t1), and in its run the first chunk that ends at or after t0, by bisection
        (a run's chunks end in order). Every chunk before the run ends before t0 where the
        run's first chunk starts more than `reorder_ns` before t0 (a chunk starts at most
        `reorder_ns` before the end of any chunk added before it), or where the run starts
        the buffer. Between the two boundary chunks the run's events all lie in the window,
        one view of its segment; the window is one view where the boundary chunks' events
        in it adjoin that one (time-sorted chunks), else joined by `_joined`.
        """
        chunks = self.chunks
        hi = len(chunks) - 1
        while hi >= 0 and chunks[hi][0] > t1:
            hi -= 1
        if hi < 0:
            return None
        first = max(chunks[hi][5] - chunks[0][4], 0)  # the run's first chunk still held
        if first > 0 and chunks[first][0] >= t0 - self.reorder_ns:
            return None
        lo, top = first, hi + 1
        while lo < top:
            mid = (lo + top) // 2
            if chunks[mid][1] < t0:
                lo = mid + 1
            else:
                top = mid
        if lo > hi:
            return None
        parts = [_within(chunks[lo], t0, t1)]
        if lo < hi:
            first, last = chunks[lo], chunks[hi]
            end = first[3] + len(first[2])  # the chunks between, as one view
            parts += [(first[2].base[end:last[3]], end), _within(last, t0, t1)]
        return _joined(parts)

    def last(self, t1, n):
        """Return the last `n` events at or before t1 (read-only), and the earliest's time."""
        parts, total = [], 0
        for c_min, c_max, events, start, _, _ in reversed(self.chunks):
            if c_min > t1:
                continue
            part = (events, start) if c_max <= t1 else _part(events, start, events['t'] <= t1)
            parts.append(part)
            total += len(part[0])
            if total >= n:
                break
        events = _joined(parts[::-1])
        if len(events) > n:
            t = events['t']
            if (t[1:] >= t[:-1]).all():  # in order, as packets of one stream are: the tail
                events = events[-n:]
            else:
                events = events[np.argsort(t, kind='stable')[-n:]]
            events.flags.writeable = False
        t0 = int(events['t'].min()) if len(events) else t1
        return events, t0


def _within(chunk, t0, t1):
    """Return a chunk's events with t0 <= t <= t1 as a part (events, start) of `_joined`."""
    c_min, c_max, events, start = chunk[:4]
    if c_min >= t0 and c_max <= t1:
        return events, start
    t = events['t']
    return _part(events, start, (t >= t0) & (t <= t1))


def _part(events, start, keep):
    """Return the events of a chunk that `keep` selects: (view, start) where they are together."""
    at = np.flatnonzero(keep)
    if len(at) and at[-1] - at[0] + 1 == len(at):
        return events[at[0]:at[-1] + 1], start + int(at[0])
    return events[keep], None  # a copy (or nothing)


def _joined(parts):
    """Join (events, start) parts: one view where they follow each other in one segment."""
    parts = [part for part in parts if len(part[0])]
    if len(parts) == 1:
        events = parts[0][0]
    elif parts and _consecutive(parts):
        (first, start), (last, at) = parts[0], parts[-1]
        events = first.base[start:at + len(last)]
    else:
        events = concat_events([part[0] for part in parts])
    events.flags.writeable = False
    return events


def _consecutive(parts):
    """Whether each part starts in the first's segment where the previous one ends."""
    segment, end = parts[0][0].base, parts[0][1]
    for events, start in parts:
        if start is None or start != end or events.base is not segment:
            return False
        end = start + len(events)
    return True
