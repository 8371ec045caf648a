"""One event topic decoded in arrival order onto one clock, whatever its message type.

dvs_msgs/EventArray carries every event's own ROS time. event_camera_msgs/EventPacket
carries the camera's encoded words with sensor time: the header stamp is the host time at
which the driver received the packet's first data, so
`stamp = sensor_time_at_packet_start + offset + transport_latency`, latency >= 0. With
`clock='ros'`, events are placed at `t_sensor + offset`, with the offset's target being
the minimum of `stamp - sensor_time_at_packet_start` over the packets of the last
`OFFSET_WINDOW_NS` of sensor time: the minimum removes latency jitter, and the sliding
window follows the slow drift between camera and host clocks. The offset moves towards its
target at most `SLEW` seconds per second of sensor time, continuously from event to event,
so ROS times never run backwards and never jump (an offset more than `SNAP_NS` off is
taken at once: a new stream). With `clock='sensor'` the camera's own clock is kept (EVT3:
the extended microsecond counter times 1000; libcaer: the driver's epoch-based sensor time).
"""

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .cdr import WireError
from .dvs import decode_event_array, EVENT_ARRAY
from .event_packet import EVENT_PACKET, EventPacketDecoder
from .events import EVENT_DTYPE, TRIGGER_DTYPE
from .kernels import as_records, kernels, time_span

CLOCKS = ('ros', 'sensor')
OFFSET_WINDOW_NS = 5_000_000_000
SLEW = 0.05
SNAP_NS = 1_000_000_000


@dataclass
class Decoded:
    """Events of one message on the stream's clock, with the message header."""

    header: object
    height: int
    width: int
    events: np.ndarray  # (N,) EVENT_DTYPE
    triggers: np.ndarray  # (M,) TRIGGER_DTYPE


@dataclass
class StreamStats:
    messages: int = 0
    events: int = 0
    triggers: int = 0
    rejected: dict = field(default_factory=dict)  # reason -> count

    def reject(self, reason):
        self.rejected[reason] = self.rejected.get(reason, 0) + 1


def shift_times(records, start, offset, target):
    """Put a non-empty event or trigger array's times on the ROS clock, in place.

    Each t moves by offset plus (target - offset) clipped to the slew's room at t, SLEW * (t -
    start) for t after start and 0 before; where no event is held back by that room, all
    move by target at once. Returns the largest t before the shift. The compiled kernel does
    both passes; `shift_times_numpy` is the same arithmetic in numpy, for arrays and
    integers the kernel does not take.
    """
    if as_records(records) and records.flags.writeable:
        t_max = kernels.shift_times(records, start, offset, target, SLEW)
        if t_max is not None:
            return t_max
    return shift_times_numpy(records, start, offset, target)


def shift_times_numpy(records, start, offset, target):
    """`shift_times` in numpy (float64 room and clip, int64 sums that wrap)."""
    t_min, t_max = time_span(records)
    times = records['t']
    if abs(target - offset) <= SLEW * max(t_min - start, 0):
        times += target  # no event is held back by the slew: the same sums
    else:
        room = SLEW * np.maximum(times - start, 0)
        times += offset + np.clip(target - offset, -room, room).astype(np.int64)
    return t_max


class EventStream:
    """Stateful decoder for one event topic; `decode(data)` raises WireError on bad bytes."""

    # How the ROS clock moves an array's times (`shift_times_numpy` in the benchmark's
    # baseline and the tests' oracle).
    shift = staticmethod(shift_times)

    def __init__(self, msgtype, clock='ros'):
        if msgtype not in (EVENT_ARRAY, EVENT_PACKET):
            raise WireError(msgtype, '<type>', None, 'not an event message type '
                            f'(expected {EVENT_ARRAY} or {EVENT_PACKET})')
        if clock not in CLOCKS:
            raise ValueError(f'clock must be one of {CLOCKS}, got {clock!r}')
        self.msgtype = msgtype
        self.clock = clock
        self.stats = StreamStats()
        self._packets = EventPacketDecoder() if msgtype == EVENT_PACKET else None
        self._offsets = deque()  # (sensor time, stamp - sensor time), increasing offsets
        self._anchor = None  # (sensor time, offset applied there)

    def reset(self):
        """Forget decoder and clock state (a looping bag, a restarted driver)."""
        if self._packets is not None:
            self._packets.reset()
        self._offsets.clear()
        self._anchor = None

    def _clock_offset(self, sensor_ns, stamp_ns):
        """Sliding-window minimum of stamp - sensor time (a monotonic deque, O(1) amortised)."""
        offsets = self._offsets
        value = stamp_ns - sensor_ns
        if offsets and sensor_ns < offsets[-1][0]:
            offsets.clear()  # the sensor clock went backwards: a new stream
        while offsets and offsets[-1][1] >= value:
            offsets.pop()
        offsets.append((sensor_ns, value))
        while offsets[0][0] < sensor_ns - OFFSET_WINDOW_NS:
            offsets.popleft()
        return offsets[0][1]

    def _to_ros(self, sensor_ns, target, *arrays):
        """Shift event / trigger times (in place) by the slewed offset; move the anchor.

        A packet's events and triggers take one kernel call (`to_ros`: this method's
        arithmetic with `shift_times`), which declines what the Python below then does.
        """
        if self.shift is shift_times and len(arrays) == 2 \
                and arrays[0].dtype == EVENT_DTYPE and arrays[1].dtype == TRIGGER_DTYPE:
            anchor = kernels.to_ros(*arrays, sensor_ns, target, self._anchor, SLEW, SNAP_NS)
            if anchor is not None:
                self._anchor = anchor
                return
        anchor = self._anchor
        if anchor is None or abs(target - anchor[1]) > SNAP_NS or sensor_ns < anchor[0] - SNAP_NS:
            anchor = (sensor_ns, target)
        start, offset = anchor
        end = sensor_ns
        for records in arrays:
            if len(records):
                end = max(end, self.shift(records, start, offset, target))
        # numpy's clip of the int in float64, in Python floats (the same IEEE operations)
        room = SLEW * max(end - start, 0)
        self._anchor = (end, offset + int(min(max(float(target - offset), -room), room)))

    def decode(self, data):
        try:
            out = self._decode(data)
        except WireError as exc:
            self._reject(exc)
            raise
        return self._count(out)

    def decode_batch(self, messages):
        """Decode a list of messages in arrival order, as `decode` on each in turn would.

        Returns, for each message, its Decoded or the WireError that `decode` would have
        raised; statistics and rejections are counted the same way. EventPackets go through
        `EventPacketDecoder.decode_batch` (small EVT3 packets decode several times faster
        so), then onto the clock packet by packet.
        """
        if self._packets is None:
            return [self._decode_or_error(data) for data in messages]
        results = []
        for pkt in self._packets.decode_batch(messages):
            if isinstance(pkt, WireError):
                self._reject(pkt)
                results.append(pkt)
            else:
                results.append(self._count(self._place(pkt)))
        return results

    def _decode_or_error(self, data):
        try:
            return self.decode(data)
        except WireError as exc:
            return exc

    def _reject(self, exc):
        self.stats.reject(f'{exc.field}: {exc.problem}'[:120])

    def _count(self, out):
        self.stats.messages += 1
        self.stats.events += len(out.events)
        self.stats.triggers += len(out.triggers)
        return out

    def _decode(self, data):
        if self._packets is None:
            msg = decode_event_array(data)
            return Decoded(msg.header, msg.height, msg.width, msg.events,
                           np.empty(0, TRIGGER_DTYPE))
        return self._place(self._packets.decode(data))

    def _place(self, pkt):
        """Put a decoded packet's events on the stream's clock (in place)."""
        events, triggers = pkt.events, pkt.triggers
        if self.clock == 'ros' and pkt.first_sensor_time_ns is not None:
            target = self._clock_offset(pkt.first_sensor_time_ns, pkt.header.stamp_ns)
            self._to_ros(pkt.first_sensor_time_ns, target, events, triggers)
        return Decoded(pkt.header, pkt.height, pkt.width, events, triggers)
