"""Cutting event windows for one camera: the one code path for the node, replay and training.

A `WindowCutter` takes the camera's event messages and frames in arrival order and returns
`Window`s: in image mode one per frame, covering `window.duration_ms` (or the last
`window.events` events) up to the frame's stamp, cut once the events up to that stamp have
arrived (or the frame waited `window.max_lag_ms` of receive time); in rate mode one every
`1 / window.rate_hz` on the event clock. A backwards time jump (a looping bag, a restarted
driver) resets the decoder, the buffer and the pending frames and starts a new `epoch`, so
consumers can drop what belongs to the old timeline. Drops and resets are reported through
the `count(counter, key, n)` callback.
"""

from collections import deque
from dataclasses import dataclass
import logging
import time

import numpy as np

from .event_buffer import EventBuffer
from .wire.image import decode_image
from .wire.kernels import time_span
from .wire.std import Header
from .wire.stream import EventStream

log = logging.getLogger('gep_ros.windows')
MS = 1_000_000


@dataclass
class Window:
    """A window of one camera's events, with the frame it ends at (image mode)."""

    camera: str
    epoch: int
    header: Header  # the frame's header, or the window end on the events' frame_id
    t0: int
    t1: int
    events: np.ndarray  # EVENT_DTYPE, t in [t0, t1], read-only (a view of the buffer)
    sensor: tuple  # (height, width) of the event sensor
    image: object = None  # decoded sensor_msgs/Image, or None
    fed: float = 0.0  # perf_counter() when the frame (or completing events) arrived
    queued: float = 0.0  # perf_counter() when it entered the inference queue


def _ignore(*_):
    pass


class WindowCutter:
    """Decoder, bounded event buffer and window schedule of one camera."""

    def __init__(self, camera, values, clock='ros', count=_ignore, timing=_ignore):
        self.camera = camera
        self.values = values
        self.count = count
        self.timing = timing
        self.stream = EventStream(camera.events_msgtype, clock)
        self.buffer = EventBuffer(values['buffer.max_events'], int(values['buffer.keep_ms'] * MS),
                                  int(values['buffer.reorder_ms'] * MS))
        mode = values['window.mode']
        self.mode = ('image' if camera.image_topic else 'rate') if mode == 'auto' else mode
        self.jump_ns = int(values['buffer.jump_back_ms'] * MS)
        self.sensor = None
        self.frame_id = ''
        self.epoch = 0
        self.pending = deque()  # (header, image, receive_ns, fed)
        self.next_end = None
        self.last_stamp = None

    @property
    def name(self):
        return self.camera.name

    def reset(self):
        """Start a new timeline: forget decoder state, events and waiting frames."""
        if self.pending:
            self.count('dropped', 'frame lost to a time jump', len(self.pending))
        self.stream.reset()
        self.buffer.reset()
        self.pending.clear()
        self.next_end = None
        self.last_stamp = None
        self.epoch += 1
        self.count('resets', self.name)
        log.warning('%s: time jumped backwards; buffer and temporal state reset', self.name)

    def events(self, data, receive_ns, fed=None):
        """Take one serialized event message; return the windows it completes.

        Raises WireError for bytes that do not decode (nothing is changed then).
        """
        fed = time.perf_counter() if fed is None else fed
        t = time.perf_counter()
        out = self.stream.decode(data)
        events = out.events
        span = time_span(events) if len(events) else None
        if span is not None and self.buffer.newest is not None and \
                span[0] < self.buffer.newest - self.jump_ns:
            self.reset()
            out = self.stream.decode(data)  # again, with fresh decoder state
            events = out.events
            span = time_span(events) if len(events) else None
        self.timing('decode', (time.perf_counter() - t) * 1e3)
        self.sensor = (out.height, out.width)
        self.frame_id = out.header.frame_id
        self.count('events', self.name, len(events))
        self.buffer.add(events, span)
        windows = self.release(receive_ns, fed)
        if self.mode == 'rate':
            windows += self._rate_windows(fed)
        return windows

    def image(self, data, receive_ns, fed=None):
        """Take one serialized sensor_msgs/Image; return the windows now complete."""
        fed = time.perf_counter() if fed is None else fed
        t = time.perf_counter()
        image = decode_image(data)
        self.timing('decode', (time.perf_counter() - t) * 1e3)
        stamp = image.header.stamp_ns
        if self.last_stamp is not None and stamp < self.last_stamp - self.jump_ns:
            self.reset()
        self.last_stamp = stamp
        if self.mode == 'image':
            self.pending.append((image.header, image, receive_ns, fed))
            while len(self.pending) > max(self.values['queue_size'], 1):
                self.pending.popleft()
                self.count('dropped', 'frame waited too long for events')
        return self.release(receive_ns, fed)

    def release(self, receive_ns, fed, force=False):
        """Cut the windows of frames whose events have arrived (or waited long enough)."""
        max_lag = int(self.values['window.max_lag_ms'] * MS)
        if force and self.sensor is None and self.pending:
            self.count('dropped', 'frame without any events', len(self.pending))
            self.pending.clear()
        windows = []
        while self.pending and self.sensor is not None:
            header, image, frame_receive, frame_fed = self.pending[0]
            newest = self.buffer.newest
            arrived = newest is not None and newest >= header.stamp_ns
            if not (arrived or force or receive_ns - frame_receive > max_lag):
                break
            self.pending.popleft()
            # End-to-end latency counts from the frame's arrival.
            windows.append(self.cut(header, header.stamp_ns, image, frame_fed))
        return windows

    def flush(self):
        """Cut every waiting frame's window with the events there are (end of input)."""
        return self.release(0, time.perf_counter(), force=True)

    def _rate_windows(self, fed):
        newest = self.buffer.newest
        if newest is None:
            return []
        period = int(1e9 / self.values['window.rate_hz'])
        if self.next_end is None:
            self.next_end = newest + period
        due = []
        while self.next_end <= newest:
            due.append(self.next_end)
            self.next_end += period
        skip = len(due) - self.values['queue_size']
        if skip > 0:
            self.count('dropped', 'rate windows behind the event clock', skip)
            due = due[skip:]
        return [self.cut(Header(end, self.frame_id), end, None, fed) for end in due]

    def cut(self, header, end, image=None, fed=0.0):
        """Cut the window ending at `end` from the buffer."""
        n = self.values['window.events']
        if n > 0:
            events, start = self.buffer.last(end, n)
        else:
            start = end - int(self.values['window.duration_ms'] * MS)
            events = self.buffer.window(start, end)
        self.count('windows', self.name)
        return Window(self.name, self.epoch, header, start, end, events, self.sensor, image, fed)
