"""event_camera_msgs/msg/EventPacket: the message codec and a stateful per-stream decoder.

An EventPacket carries the camera's own encoded words (`events`, uint8[]) with a header,
the sensor geometry, a packet counter, a time base and the name of the encoding. Decoding
the message is cheap (the payload is a zero-copy view); decoding the payload needs the
state of the stream for `evt3` (row, vector base, clock with its rollovers) and
`libcaer_cmp` (column, vector base), so `EventPacketDecoder` keeps one state per
(encoding, width, height), like event_camera_codecs' decoder factory.

Times in the decoded arrays are SENSOR time in ns: EVT3's extended microsecond counter times
1000; libcaer / libcaer_cmp: the driver's epoch-based sensor time; mono / trigger:
`time_base` plus the record's 32-bit time. `first_sensor_time_ns` is the sensor time in
effect at the start of the decoded bytes, as event_camera_codecs' findFirstSensorTime gives
it (EVT3: the clock carried from the previous packet, or the first valid time of this one;
libcaer_cmp: the time base; record encodings: the first record's time), so that a packet's
events can be placed on the ROS clock as `stamp + t - first_sensor_time_ns`.

The `is_bigendian` flag is carried but, as in event_camera_codecs, not used: every supported
encoding is little-endian by definition.
"""

from dataclasses import dataclass, field, fields
import operator
from typing import Optional

import numpy as np

from . import evt3, libcaer
from .cdr import CdrReader, CdrWriter, WireError
from .events import EVENT_DTYPE, TRIGGER_DTYPE
from .kernels import kernels
from .std import Header, read_header, write_header

EVENT_PACKET = 'event_camera_msgs/msg/EventPacket'
# Bytes per word / record of each encoding.
WORD_BYTES = {'evt3': 2, 'libcaer_cmp': 2, 'libcaer': 8, 'mono': 8, 'trigger': 8}
ENCODINGS = tuple(WORD_BYTES)
_MASK64 = (1 << 64) - 1


@dataclass
class EventPacket:
    """A decoded event_camera_msgs/msg/EventPacket; `events` is a view into the message."""

    header: Header
    height: int
    width: int
    seq: int
    time_base: int
    encoding: str
    is_bigendian: bool
    events: np.ndarray  # (B,) uint8, the encoded payload
    # Byte offsets in the serialized message, for error messages.
    encoding_offset: int = field(default=0, repr=False, compare=False)
    events_offset: int = field(default=0, repr=False, compare=False)


def decode_event_packet(data):
    """Decode serialized EventPacket bytes (with CDR header); the payload is not copied.

    Little-endian messages take a fast path, the compiled `event_packet_fields`, that checks
    the bytes are there and reads the fixed layout; anything it does not accept (big-endian
    CDR, a length that overruns, a missing NUL, bad UTF-8, trailing bytes) is read again
    field by field by `read_event_packet`, which raises the WireError naming the field.
    """
    fields = kernels.event_packet_fields(data)
    if fields is None:
        return read_event_packet(data)
    (sec, nanosec, frame_id, height, width, seq, time_base, encoding, is_bigendian,
     encoding_offset, events_offset, n) = fields
    events = np.frombuffer(data, np.uint8, n, events_offset)
    return EventPacket(Header(sec * 1_000_000_000 + nanosec, frame_id), height, width, seq,
                       time_base, encoding, is_bigendian, events, encoding_offset,
                       events_offset)


def read_event_packet(data):
    """Decode like `decode_event_packet`, field by field through CdrReader (any byte order)."""
    reader = CdrReader(data, EVENT_PACKET)
    header = read_header(reader)
    height = reader.u32('height')
    width = reader.u32('width')
    seq = reader.u64('seq')
    time_base = reader.u64('time_base')
    reader.align(4)
    encoding_offset = reader.pos
    encoding = reader.string('encoding')
    is_bigendian = reader.boolean('is_bigendian')
    events = reader.sequence('events', np.uint8)
    events_offset = reader.pos - events.size
    reader.done()
    return EventPacket(header, height, width, seq, time_base, encoding, is_bigendian, events,
                       encoding_offset, events_offset)


def encode_event_packet(header, height, width, seq, time_base, encoding, events_bytes,
                        is_bigendian=False):
    """Serialize an EventPacket; `events_bytes` is bytes-like or an array (its raw bytes)."""
    if isinstance(events_bytes, np.ndarray):
        payload = np.ascontiguousarray(events_bytes).reshape(-1).view(np.uint8)
    else:
        payload = np.frombuffer(events_bytes, np.uint8)
    writer = CdrWriter(EVENT_PACKET)
    write_header(writer, header)
    writer.u32(height, 'height')
    writer.u32(width, 'width')
    writer.u64(seq, 'seq')
    writer.u64(time_base, 'time_base')
    writer.string(encoding, 'encoding')
    writer.boolean(is_bigendian, 'is_bigendian')
    writer.sequence(payload, np.uint8, 'events')
    return writer.getvalue()


@dataclass(slots=True)
class DecodedPacket:
    """Events of one EventPacket (or of the part of it before a time limit)."""

    header: Header
    height: int
    width: int
    seq: int
    time_base: int
    encoding: str
    events: np.ndarray  # (N,) EVENT_DTYPE, t in sensor ns
    triggers: np.ndarray  # (M,) TRIGGER_DTYPE, t in sensor ns
    first_sensor_time_ns: Optional[int]  # None while the stream has no valid time yet
    consumed: int = 0  # payload bytes decoded so far; resume a time-limited decode here
    next_time_ns: Optional[int] = None  # sensor time that stopped a time-limited decode
    done: bool = True  # the whole payload has been consumed


def _setup_kernels():
    """Give the kernels the classes they build; refuse fields other than theirs."""
    for cls, names in ((DecodedPacket, kernels.PACKET_FIELDS), (Header, kernels.HEADER_FIELDS)):
        if tuple(f.name for f in fields(cls)) != names:
            raise ImportError(f'gep_ros.wire._kernels builds {cls.__name__} with the fields '
                              f'{names}, but it has {tuple(f.name for f in fields(cls))}')
    kernels.setup_packets(DecodedPacket, Header)


_setup_kernels()


def _record_times(records, time_base):
    """Mono / trigger record time: time_base + low 32 bits, in uint64 like upstream."""
    t = np.uint64(time_base & _MASK64) + (records & np.uint64(0xFFFFFFFF))
    return t.view(np.int64)


def _decode_mono(records, time_base, until_ns):
    t = _record_times(records, time_base)
    stop = libcaer.first_cut(t, until_ns)
    records = records[:stop]
    events = np.empty(stop, EVENT_DTYPE)
    events['t'] = t[:stop]
    events['x'] = (records >> np.uint64(32)) & np.uint64(0xFFFF)
    events['y'] = (records >> np.uint64(48)) & np.uint64(0x7FFF)
    events['p'] = records >> np.uint64(63)
    return events, np.empty(0, TRIGGER_DTYPE), t, stop


def _decode_trigger(records, time_base, until_ns):
    t = _record_times(records, time_base)
    stop = libcaer.first_cut(t, until_ns)
    records = records[:stop]
    triggers = np.empty(stop, TRIGGER_DTYPE)
    triggers['t'] = t[:stop]
    triggers['p'] = records >> np.uint64(63)
    triggers['id'] = (records >> np.uint64(48)) & np.uint64(0xFF)  # upstream casts to uint8
    return np.empty(0, EVENT_DTYPE), triggers, t, stop


def _decode_libcaer(records, time_base, until_ns):
    events, stop, t = libcaer.decode_libcaer(records, time_base, until_ns)
    return events, np.empty(0, TRIGGER_DTYPE), t, stop


_RECORD_DECODERS = {'mono': _decode_mono, 'trigger': _decode_trigger,
                    'libcaer': _decode_libcaer}


def _word_size(msg):
    """Bytes per word of the message's encoding; WireError for an unknown or a split word."""
    size = WORD_BYTES.get(msg.encoding)
    if size is None:
        raise WireError(EVENT_PACKET, 'encoding', msg.encoding_offset,
                        f'unsupported encoding {msg.encoding!r} (known: '
                        f'{", ".join(ENCODINGS)})')
    total = msg.events.size
    if total % size:
        raise WireError(EVENT_PACKET, 'events', msg.events_offset + total - total % size,
                        f'{total} bytes are not a whole number of {size}-byte '
                        f'{msg.encoding} words')
    return size


# A batch decodes consecutive parsed evt3 packets in runs of at most this many words (unless
# one packet is longer), so that a run's arrays stay a few megabytes.
RUN_WORDS = 1 << 17
_WORD = np.dtype('<u2')
_NO_STATE = evt3.Evt3State()
_NO_TRIGGERS = np.empty(0, TRIGGER_DTYPE)
_NO_TRIGGERS.flags.writeable = False


class EventPacketDecoder:
    """Stateful decoder for the EventPackets of one stream, in arrival order.

    `decode(data)` decodes a whole packet. `decode(data, until_ns=T)` is event_camera_codecs'
    decodeUntil: it stops before the first event at sensor time >= T (EVT3 / libcaer_cmp: at
    the first TIME_LOW word reaching T) and reports `consumed` bytes and `next_time_ns`; call
    again with the same message, a later limit and `start=result.consumed` for the rest.
    A packet that raises WireError leaves the decoder's state untouched.

    `decode_batch(messages)` decodes a list of packets as `decode` would one after the other.

    A serialized evt3 packet, the streaming case, is decoded by one kernel call
    (`_kernels.evt3_packet`: layout, words, the stream's state and the DecodedPacket);
    anything that call does not take goes the general way. Its event arrays are views into
    chunks of about a megabyte that the decoder keeps: a chunk is written again once no
    packet's array is left of it, and freed when the decoder and the last array are.
    """

    def __init__(self):
        self._states = {}
        # The kernel's pool: events chunk, events used, triggers chunk, triggers used, the
        # empty triggers array that packets without triggers share (read-only), and the
        # spare chunks of each.
        self._pool = [np.empty(0, EVENT_DTYPE), 0, np.empty(0, TRIGGER_DTYPE), 0, _NO_TRIGGERS,
                      [], []]

    def reset(self):
        """Forget all stream state (a looping bag, a restarted driver)."""
        self._states.clear()

    def decode(self, data, until_ns=None, start=0):
        """Decode serialized EventPacket bytes (or an EventPacket) into a DecodedPacket."""
        whole = until_ns is None and type(start) is int and start == 0
        if whole and not isinstance(data, EventPacket):
            # What a subscription does for each packet.
            out = kernels.evt3_packet(data, self._states, self._pool)
            if out is not None:
                return out
        msg = data if isinstance(data, EventPacket) else decode_event_packet(data)
        if whole and msg.encoding == 'evt3' and not msg.events.size & 1:
            return self._decode_evt3(msg)
        if until_ns is not None:
            until_ns = operator.index(until_ns)
            if not 0 <= until_ns <= _MASK64:
                raise ValueError(f'until_ns must be a uint64 time in ns, got {until_ns}')
        size = _word_size(msg)
        total = msg.events.size
        start = operator.index(start)
        if start % size or not 0 <= start <= total:
            raise WireError(EVENT_PACKET, 'events', msg.events_offset,
                            f'start {start} is not a word boundary within the {total} bytes')
        return self._decode(msg, size, until_ns, start)

    def decode_batch(self, messages):
        """Decode packets of this stream in arrival order, as `decode` on each in turn would.

        `messages` is a list of serialized EventPackets (or EventPackets). Returns a list
        with, for each, its DecodedPacket or the WireError that `decode` would have raised;
        the decoder's state afterwards is the same as well. Consecutive serialized evt3
        packets are decoded by one kernel call (`_kernels.evt3_packets`). Consecutive
        parsed evt3 EventPackets with the same geometry are decoded by one
        `evt3.decode_run` call once the clock is valid (before that, packet by packet: the
        first valid time is looked for in each packet on its own); a run in which a packet
        raises is decoded again packet by packet, so that exactly that packet gets the
        error. Their event and trigger arrays are then views into the run's arrays. Other
        encodings are decoded one by one.
        """
        messages = messages if type(messages) is list else list(messages)
        results = []
        run, run_key, run_words = [], None, 0  # the pending run: indices into results
        index = 0
        while index < len(messages):
            data = messages[index]
            if not isinstance(data, EventPacket):
                # Serialized evt3 packets go through the kernel, one call for as many in a
                # row as it takes (a parsed EventPacket skips that), after the pending run:
                # state follows arrival.
                if run:
                    self._decode_run(run, results)
                    run = []
                done = kernels.evt3_packets(messages, index, self._states, self._pool)
                if done:
                    results += done
                    index += len(done)
                    continue
            index += 1
            try:
                msg = data if isinstance(data, EventPacket) else decode_event_packet(data)
                size = _word_size(msg)
            except WireError as exc:
                results.append(exc)  # touches no state: a pending run goes on
                continue
            if msg.encoding == 'evt3':
                key = ('evt3', msg.width, msg.height)
                words = msg.events.size >> 1
                if run and (key != run_key or run_words + words > RUN_WORDS):
                    self._decode_run(run, results)
                    run = []
                if run or self._states.get(key, _NO_STATE).valid:
                    if not run:
                        run_key, run_words = key, 0
                    run.append(len(results))
                    run_words += words
                    results.append(msg)
                    continue
            elif run:
                self._decode_run(run, results)
                run = []
            results.append(self._decode_or_error(msg, size))
        if run:
            self._decode_run(run, results)
        return results

    def _decode_or_error(self, msg, size):
        try:
            return self._decode(msg, size, None, 0)
        except WireError as exc:
            return exc

    def _decode_run(self, run, results):
        """Decode the evt3 packets results[i] for i in run (one geometry, clock valid)."""
        msgs = [results[i] for i in run]
        if len(msgs) == 1:
            results[run[0]] = self._decode_or_error(msgs[0], 2)
            return
        first = msgs[0]
        key = ('evt3', first.width, first.height)
        payloads = [m.events for m in msgs]
        bounds = np.zeros(len(msgs) + 1, np.int64)
        np.cumsum([p.size >> 1 for p in payloads], out=bounds[1:])
        words = np.concatenate(payloads).view('<u2')
        try:
            out = evt3.decode_run(words, bounds, self._states[key], first.width, first.height,
                                  msgtype=EVENT_PACKET)
        except WireError:
            for i, msg in zip(run, msgs):
                results[i] = self._decode_or_error(msg, 2)
            return
        self._states[key] = out.result.state
        events, triggers = out.result.events, out.result.triggers
        ev_at, tr_at = out.events_at.tolist(), out.triggers_at.tolist()
        for k, (i, msg, us) in enumerate(zip(run, msgs, out.start_time_us.tolist())):
            results[i] = DecodedPacket(msg.header, msg.height, msg.width, msg.seq,
                                       msg.time_base, msg.encoding,
                                       events[ev_at[k]:ev_at[k + 1]],
                                       triggers[tr_at[k]:tr_at[k + 1]], us * evt3.NS_PER_US,
                                       msg.events.size)

    def _decode_evt3(self, msg):
        """`_decode` of a whole evt3 packet (whole words), with nothing else to check."""
        key = ('evt3', msg.width, msg.height)
        out = evt3.decode_words(msg.events.view(_WORD), self._states.get(key, _NO_STATE),
                                msg.width, msg.height, msgtype=EVENT_PACKET,
                                offset=msg.events_offset)
        self._states[key] = out.state
        total = msg.events.size
        return DecodedPacket(msg.header, msg.height, msg.width, msg.seq, msg.time_base,
                             msg.encoding, out.events, out.triggers, out.first_time_ns, total,
                             None, True)

    def _decode(self, msg, size, until_ns, start):
        payload = msg.events
        total = payload.size
        body = payload[start:]
        if size == 8:
            records = body.view('<u8')
            events, triggers, t, stop = _RECORD_DECODERS[msg.encoding](
                records, msg.time_base, until_ns)
            first = int(t[0]) if t.size else None
            next_ns = int(t[stop]) if stop < t.size else None
        else:
            key = (msg.encoding, msg.width, msg.height)
            state = self._states.get(key, _NO_STATE)
            words = body.view(_WORD)
            offset = msg.events_offset + start
            if msg.encoding == 'evt3':
                out = evt3.decode_words(words, state, msg.width, msg.height, until_ns,
                                        msgtype=EVENT_PACKET, offset=offset)
            else:
                out = libcaer.decode_libcaer_cmp(words, state, msg.width, msg.height,
                                                 msg.time_base, until_ns,
                                                 msgtype=EVENT_PACKET, offset=offset)
            self._states[key] = out.state
            events, triggers, stop = out.events, out.triggers, out.consumed
            first, next_ns = out.first_time_ns, out.next_time_ns
        consumed = start + stop * size
        return DecodedPacket(msg.header, msg.height, msg.width, msg.seq, msg.time_base,
                             msg.encoding, events, triggers, first, consumed, next_ns,
                             consumed == total)
