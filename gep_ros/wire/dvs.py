"""dvs_msgs/msg/EventArray (ROS 2 layout) to and from one structured event array.

ROS 2 layout: header, uint32 height, uint32 width, Event[] events, with
Event = (uint16 x, uint16 y, builtin_interfaces/Time ts, bool polarity). In CDR the first
event starts 4-aligned (it follows the sequence length) and takes 13 bytes; every later
event starts 2 mod 4 and takes 16 (2 bytes of padding before `ts.sec`, 1 after `polarity`).
So after the first event the array is a fixed-stride record view: decode copies it into the
event array in one pass of the compiled kernel (`_kernels.event_array_decode`), encode writes
it through numpy's strided views, without a Python loop either way: this is what makes them
hundreds of times faster than building one object per event. `decode_events_numpy` is the
numpy strided copy that the kernel replaced, kept as the tests' oracle and the benchmark's
baseline.
"""

from dataclasses import dataclass
import threading

import numpy as np

from .cdr import CdrReader, CdrWriter, WireError
from .events import EVENT_DTYPE
from .kernels import kernels
from .std import Header, read_header, write_header

EVENT_ARRAY = 'dvs_msgs/msg/EventArray'
NS = 1_000_000_000
_INT32 = np.iinfo(np.int32)

# An event starting 2 mod 4: x, y, 2 padding bytes, sec, nanosec, polarity (15 bytes used,
# stride 16 with the trailing pad that the last event of a message does not have).
_STRIDED = np.dtype({'names': ['x', 'y', 'sec', 'nsec', 'p'],
                     'formats': ['<u2', '<u2', '<i4', '<u4', 'u1'],
                     'offsets': [0, 2, 6, 10, 14], 'itemsize': 15})
# The same record for writing, with its padding bytes named so they can be zeroed.
_STRIDED_W = np.dtype({'names': ['x', 'y', 'pad0', 'sec', 'nsec', 'p'],
                       'formats': ['<u2', '<u2', '<u2', '<i4', '<u4', 'u1'],
                       'offsets': [0, 2, 4, 6, 10, 14], 'itemsize': 15})
# The first event, starting 0 mod 4: no padding before sec.
_FIRST = np.dtype({'names': ['x', 'y', 'sec', 'nsec', 'p'],
                   'formats': ['<u2', '<u2', '<i4', '<u4', 'u1'],
                   'offsets': [0, 2, 4, 8, 12], 'itemsize': 13})


_scratch = threading.local()


def _scratch_buffer(nbytes):
    """Return a per-thread uint8 buffer of nbytes, reused across calls.

    Encoding into memory that is already mapped, then copying once into the bytes object,
    is several times faster at a million events than writing into a fresh allocation,
    whose pages the kernel must first fault in.
    """
    buf = getattr(_scratch, 'buf', None)
    if buf is None or buf.size < nbytes:
        buf = _scratch.buf = np.empty(max(nbytes, 1 << 16), np.uint8)
    return buf[:nbytes]


def events_nbytes(n):
    """Bytes that n events take in CDR, starting 4-aligned."""
    return 16 * n - 3 if n else 0


@dataclass
class EventArray:
    """A decoded dvs_msgs/msg/EventArray."""

    header: Header
    height: int
    width: int
    events: np.ndarray  # (N,) EVENT_DTYPE


def _strided(buf, offset, count, dtype):
    return np.ndarray((count,), dtype, buffer=buf, offset=offset, strides=(16,))


def _records_to_events(rec, out):
    out['x'] = rec['x']
    out['y'] = rec['y']
    t = out['t']
    np.multiply(rec['sec'], NS, out=t, dtype=np.int64, casting='unsafe')
    t += rec['nsec']
    np.not_equal(rec['p'], 0, out=out['p'].view(np.bool_))


def decode_events_numpy(buf, start, n):
    """Decode n events of CDR (the first at byte `start`) with numpy's strided views."""
    events = np.empty(n, EVENT_DTYPE)
    if n:
        _records_to_events(np.ndarray((1,), _FIRST, buffer=buf, offset=start), events[:1])
        if n > 1:
            _records_to_events(_strided(buf, start + 14, n - 1, _STRIDED), events[1:])
    return events


def decode_event_array(data):
    """Decode serialized dvs_msgs/msg/EventArray bytes (with CDR header) into an EventArray.

    A plainly laid out little-endian message is one kernel call (`event_array_message`);
    anything that call does not take is read again field by field by `read_event_array`,
    which raises the WireError naming the field.
    """
    fields = kernels.event_array_message(data)
    if fields is None:
        return read_event_array(data)
    sec, nanosec, frame_id, height, width, events = fields
    return EventArray(Header(sec * NS + nanosec, frame_id), height, width, events)


def read_event_array(data):
    """Decode like `decode_event_array`, field by field through CdrReader (any byte order)."""
    reader = CdrReader(data, EVENT_ARRAY)
    header = read_header(reader)
    height = reader.u32('height')
    width = reader.u32('width')
    n = reader.length('events', 13)
    start = reader.pos
    reader.need(events_nbytes(n), 'events')
    events = np.empty(n, EVENT_DTYPE)
    if n:
        if not reader.little:
            raise WireError(EVENT_ARRAY, 'events', start, 'big-endian CDR is not supported')
        kernels.event_array_decode(reader.buf, start, n, events)
    reader.pos = start + events_nbytes(n)
    reader.done()
    return EventArray(header, height, width, events)


def encode_event_array(header, height, width, events):
    """Serialize an EventArray (header, sensor size, EVENT_DTYPE array) to CDR bytes."""
    events = np.asarray(events)
    if events.dtype.names is None or not {'x', 'y', 't', 'p'} <= set(events.dtype.names):
        raise WireError(EVENT_ARRAY, 'events', None,
                        f'expected a structured array with x, y, t, p, got {events.dtype}')
    writer = CdrWriter(EVENT_ARRAY)
    write_header(writer, header)
    writer.u32(height, 'height')
    writer.u32(width, 'width')
    n = events.shape[0]
    writer.u32(n, 'events')
    prefix = writer.buf
    start = len(prefix)
    out = _scratch_buffer(start + events_nbytes(n))  # every byte, padding too, written below
    out[:start] = np.frombuffer(prefix, np.uint8)
    if n == 0:
        return out.tobytes()
    t = events['t']
    sec, nsec = np.divmod(t, NS)
    if sec.min() < _INT32.min or sec.max() > _INT32.max:
        raise WireError(EVENT_ARRAY, 'events.ts', None,
                        'time outside the int32 seconds range of builtin_interfaces/Time')
    parts = [(np.ndarray((1,), _FIRST, buffer=out, offset=start), slice(0, 1))]
    if n > 1:
        rest = _strided(out, start + 14, n - 1, _STRIDED_W)
        rest['pad0'] = 0
        out[start + 13:-1:16] = 0  # the byte after each polarity but the last
        parts.append((rest, slice(1, None)))
    for rec, sl in parts:
        rec['x'] = events['x'][sl]
        rec['y'] = events['y'][sl]
        rec['sec'] = sec[sl]
        rec['nsec'] = nsec[sl]
        np.not_equal(events['p'][sl], 0, out=rec['p'].view(np.bool_))
    return out.tobytes()
