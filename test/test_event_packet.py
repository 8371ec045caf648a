"""event_camera_msgs/EventPacket: message codec and payload decoders against outside oracles.

The checksums are the assertions of event_camera_codecs' and event_camera_py's own tests on
the real recordings (see test/data/README.md). The vectorised EVT3 decoder is also checked
word for word against a plain loop written after the reference C++ decoder.
"""

from functools import lru_cache
import tracemalloc

from hypothesis import given, HealthCheck, settings, strategies as st
import numpy as np
import pytest
from rosbags.rosbag1 import Reader as Ros1Reader
from rosbags.rosbag2 import Reader as Ros2Reader

from gep_ros.msgtypes import EVENT_PACKET
from gep_ros.wire import evt3
from gep_ros.wire.cdr import WireError
from gep_ros.wire.event_packet import (decode_event_packet, encode_event_packet,
                                       EventPacketDecoder)
from gep_ros.wire.std import Header

EVT3_TRIGGER = 'codecs_test_data_evt3_trigger'
LIBCAER = 'codecs_test_data_libcaer_rollover'
EVPY_1 = 'evpy_test_events_1'
EVPY_1_ROS1 = 'evpy_test_events_1.bag'
# Empty storage_identifier in metadata.yaml: open the mcap file itself.
EVPY_2 = 'evpy_test_events_2/test_events_2_0.mcap'
ALL_BAGS = (EVT3_TRIGGER, LIBCAER, EVPY_1, EVPY_1_ROS1, EVPY_2)
U64 = np.uint64


@lru_cache(maxsize=None)
def _raw(path, store):
    """CDR bytes of every message of a bag (ROS 1 messages converted to CDR)."""
    if path.endswith('.bag'):
        with Ros1Reader(path) as reader:
            return [store.ros1_to_cdr(raw, EVENT_PACKET) for _, _, raw in reader.messages()]
    with Ros2Reader(path) as reader:
        return [bytes(raw) for _, _, raw in reader.messages()]


@pytest.fixture
def messages(bags_dir, typestore):
    return lambda name: _raw(str(bags_dir / name), typestore)


def _decode_all(raws, until_ns=None):
    decoder = EventPacketDecoder()
    return [decoder.decode(raw, until_ns) for raw in raws]


def _cat(packets, name):
    return np.concatenate([getattr(p, name) for p in packets])


def _u64sum(values):
    return int(values.astype(np.int64).view(U64).sum(dtype=U64))


def _cd_sums(events):
    return (_u64sum(events['t']), _u64sum(events['x']), _u64sum(events['y']),
            _u64sum(events['p']))


def _last_time(packets):
    times = [int(a['t'].max()) for p in packets for a in (p.events, p.triggers) if a.size]
    return max(times, default=0)


@pytest.mark.parametrize('name', ALL_BAGS)
def test_fields_match_rosbags_and_encode_is_byte_identical(messages, typestore, name):
    for raw in messages(name):
        ref = typestore.deserialize_cdr(raw, EVENT_PACKET)
        msg = decode_event_packet(raw)
        stamp = ref.header.stamp.sec * 1_000_000_000 + ref.header.stamp.nanosec
        assert msg.header == Header(stamp, ref.header.frame_id)
        assert (msg.height, msg.width, msg.seq, msg.time_base, msg.encoding, msg.is_bigendian) \
            == (ref.height, ref.width, ref.seq, ref.time_base, ref.encoding, ref.is_bigendian)
        assert np.array_equal(msg.events, ref.events)
        assert encode_event_packet(msg.header, msg.height, msg.width, msg.seq, msg.time_base,
                                   msg.encoding, msg.events, msg.is_bigendian) == bytes(raw)


def test_evt3_trigger_checksums(messages):
    packets = _decode_all(messages(EVT3_TRIGGER))
    events, triggers = _cat(packets, 'events'), _cat(packets, 'triggers')
    assert len(packets) == 105 and len(events) == 82469 and len(triggers) == 2
    assert _cd_sums(events) == (1222326831810000, 42078718, 31656267, 41439)
    assert (int(triggers['t'].sum()), int(triggers['p'].sum()), int(triggers['id'].sum())) \
        == (29096982000, 1, 0)
    assert np.all(np.diff(events['t']) >= 0)


@pytest.mark.parametrize('until, sums, last', [
    (14252072000, (29004181874000, 897009, 773502, 1028), 14252063000),  # start of a packet
    (14251634000, (28491115518000, 880131, 758865, 1006), 14251630000),  # middle of a packet
    (14252063000, (28989929811000, 896982, 773451, 1027), 14252047000),  # its last time
])
def test_evt3_decode_until(messages, until, sums, last):
    packets = _decode_all(messages(EVT3_TRIGGER), until)
    assert _cd_sums(_cat(packets, 'events')) == sums
    assert _last_time(packets) == last
    # Packets after the one that reached the limit decode nothing (the clock stands there).
    stopped = [p.done for p in packets].index(False)
    assert all(p.consumed == 0 and p.next_time_ns >= until for p in packets[stopped + 1:])
    if until == 14252072000:
        assert stopped == 3


@pytest.mark.parametrize('name', [EVPY_1, EVPY_1_ROS1])
def test_evpy_events_1(messages, name):
    raws = messages(name)
    packets = _decode_all(raws)
    events, triggers = _cat(packets, 'events'), _cat(packets, 'triggers')
    assert len(raws) == 517 and packets[0].header.frame_id == '0293'
    assert (np.count_nonzero(events['p'] == 0), np.count_nonzero(events['p'] == 1)) \
        == (218291, 125183)
    assert (np.count_nonzero(triggers['p'] == 0), np.count_nonzero(triggers['p'] == 1)) \
        == (2078, 2079)
    assert int((events['t'] // 1000).sum() + (triggers['t'] // 1000).sum()) == 2885601049874
    assert packets[0].first_sensor_time_ns == 7139840 * 1000
    assert events['t'][0] == 7139845 * 1000


def test_evpy_events_1_in_frames_resumes_where_it_stopped(messages):
    # event_camera_py's decode_until test: 100 ms frames, each packet decoded piecewise.
    raws = messages(EVPY_1)
    decoder, interval = EventPacketDecoder(), 100_000_000
    frame_time = 7139845000 + interval
    chunks = []
    for raw in raws:
        msg, start = decode_event_packet(raw), 0
        while True:
            out = decoder.decode(msg, frame_time, start)
            chunks.append(out)
            start = out.consumed
            if out.done:
                break
            while frame_time <= out.next_time_ns:
                frame_time += interval
    assert frame_time == 9239845000
    whole = _decode_all(raws)
    for name in ('events', 'triggers'):
        assert np.array_equal(_cat(chunks, name), _cat(whole, name))


def test_libcaer_rollover(messages):
    packets = _decode_all(messages(LIBCAER))
    events = _cat(packets, 'events')
    assert len(packets) == 201 and len(_cat(packets, 'triggers')) == 0
    assert _cd_sums(events) == (15762826572202229126, 111651612, 82801007, 181908)
    first = packets[0].events
    assert (first['t'][0], first['t'][-1]) == (1702309120762236018, 1702309120772213018)
    assert (np.count_nonzero(first['p'] == 0), np.count_nonzero(first['p'] == 1)) == (741, 872)
    assert packets[1].first_sensor_time_ns == 1702309120772229018


@pytest.mark.parametrize('until, sums, last', [
    (1702309120762236018, (0, 0, 0, 0), 0),
    (1702309120772229018, (15706488888233371866, 533572, 401707, 872), 1702309120772213018),
    (1702309120773239018, (3141897757159270998, 582593, 442271, 951), 1702309120773233018),
    (1702309120782222018, (12099893362926800844, 1068301, 808043, 1788), 1702309120782216018),
])
def test_libcaer_decode_until(messages, until, sums, last):
    packets = _decode_all(messages(LIBCAER), until)
    assert _cd_sums(_cat(packets, 'events')) == sums
    assert _last_time(packets) == last


def test_libcaer_cmp_evpy_events_2(messages):
    packets = _decode_all(messages(EVPY_2))
    events = _cat(packets, 'events')
    assert len(packets) == 100 and {p.encoding for p in packets} == {'libcaer_cmp'}
    assert (np.count_nonzero(events['p'] == 0), np.count_nonzero(events['p'] == 1)) \
        == (360223, 211043)
    assert len(_cat(packets, 'triggers')) == 0
    us = events['t'] // 1000
    assert int((us - us[0]).sum()) == 335555680277  # event_camera_py: relative to the first
    assert packets[0].first_sensor_time_ns == 1744227144732712 * 1000
    assert events['x'].max() < 346 and events['y'].max() < 260


def _cmp_word(code, value):
    return (code << 12) | value


def test_libcaer_cmp_words_and_state_across_packets():
    col, row, vbase, vect8, high, low = (lambda v, c=c: _cmp_word(c, v)
                                         for c in (2, 3, 4, 5, 0, 1))
    first = [col(5), row(7 | 1 << 11), high(1), low(2), vbase(10), vect8(0b101), vect8(1),
             _cmp_word(6, 0xFFF)]  # VECT_12 is not a libcaer_cmp word: ignored upstream
    second = [row(3), vect8(0b10), vect8(0b1000_0000), col(25), row(4)]
    decoder = EventPacketDecoder()
    out = [decoder.decode(encode_event_packet(Header(), 30, 20, i, base, 'libcaer_cmp',
                                              np.array(words, '<u2')))
           for i, (base, words) in enumerate([(7_000_000, first), (9_000_000, second)])]
    got = [tuple(map(int, e)) for p in out for e in p.events[['x', 'y', 't', 'p']]]
    t1 = (7000 + 4096 + 2) * 1000
    # Column, vector base (26 after three VECT_8) and polarity carry over, the clock restarts
    # at the packet's time base; row 41 and column 25 are outside 20 x 30.
    assert got == [(5, 7, 7_000_000, 1), (5, 10, t1, 0), (5, 12, t1, 0), (5, 18, t1, 0),
                   (5, 3, 9_000_000, 0), (5, 27, 9_000_000, 0)]
    assert out[1].first_sensor_time_ns == 9_000_000


@pytest.mark.parametrize('encoding', ['mono', 'trigger'])
def test_record_encodings(encoding):
    rng = np.random.default_rng(1)
    n = 50
    t32 = np.sort(rng.integers(0, 2**32, n, dtype=np.uint64))
    x, y, p = rng.integers(0, 2**16, n), rng.integers(0, 2**15, n), rng.integers(0, 2, n)
    records = (t32 | x.astype(U64) << U64(32) | y.astype(U64) << U64(48)
               | p.astype(U64) << U64(63))
    raw = encode_event_packet(Header(5, 'cam'), 480, 640, 1, 10**18, encoding, records)
    decoder = EventPacketDecoder()
    out = decoder.decode(raw)
    arr = out.events if encoding == 'mono' else out.triggers
    assert np.array_equal(arr['t'], 10**18 + t32.astype(np.int64))
    assert np.array_equal(arr['p'], p)
    if encoding == 'mono':
        assert np.array_equal(arr['x'], x) and np.array_equal(arr['y'], y)
    else:
        assert np.array_equal(arr['id'], y & 0xFF) and out.events.size == 0
    assert out.first_sensor_time_ns == 10**18 + int(t32[0])
    until = 10**18 + int(t32[20])
    part = decoder.decode(raw, until)
    rest = decoder.decode(raw, start=part.consumed)
    assert (part.consumed, part.next_time_ns, part.done, rest.done) \
        == (8 * int(np.argmax(t32 >= t32[20])), until, False, True)


def _packet(words, encoding='evt3', width=640, height=480):
    return encode_event_packet(Header(1, 'f'), height, width, 0, 0, encoding,
                               np.array(words, '<u2'))


def test_errors_name_field_and_offset_and_keep_state():
    raw = _packet([0x8001], encoding='evt4')
    with pytest.raises(WireError) as err:
        EventPacketDecoder().decode(raw)
    assert (err.value.field, err.value.offset) == ('encoding', raw.index(b'evt4') - 4)
    assert EVENT_PACKET in str(err.value)
    odd = encode_event_packet(Header(), 1, 1, 0, 0, 'evt3', b'\x01\x80\x02')
    with pytest.raises(WireError) as err:
        EventPacketDecoder().decode(odd)
    assert (err.value.field, err.value.offset) == ('events', len(odd) - 1)
    with pytest.raises(WireError, match='8-byte libcaer'):
        EventPacketDecoder().decode(encode_event_packet(Header(), 1, 1, 0, 0, 'libcaer',
                                                        bytes(12)))

    good = _packet([0x8001, 0x6002, 0x0005, 0x2007, 0x3010, 0x5003])
    later = _packet([0x2009, 0x4001, 0x6010, 0x2008])
    bad = _packet([0x6003, 0x0006, 0x9000, 0x2001])
    decoder = EventPacketDecoder()
    decoder.decode(good)
    with pytest.raises(WireError) as err:
        decoder.decode(bad)
    assert (err.value.field, err.value.offset) == ('events', decode_event_packet(bad)
                                                   .events_offset + 4)
    fresh = EventPacketDecoder()
    fresh.decode(good)
    assert np.array_equal(decoder.decode(later).events, fresh.decode(later).events)
    # Before the first valid time the reference skips every word, unsupported ones too.
    assert len(EventPacketDecoder().decode(_packet([0x9000, 0x2001])).events) == 0


def test_evt3_rollover_needs_a_fall_of_more_than_10_steps():
    addr_x = [0x0001, 0x2002]  # row 1, one event at x 2
    words = [0x8014, 0x6000, 0x800A, *addr_x,  # 20 -> 10: bit noise, no wrap
             0x8014, 0x8009, *addr_x,  # 20 -> 9: the 24-bit counter wrapped
             0x8FFF, 0x6005, *addr_x, 0x8000, 0xA101, *addr_x]  # wraps again at the top
    out = EventPacketDecoder().decode(_packet(words))
    want_us = [10 << 12, 1 << 24 | 9 << 12, 1 << 24 | 0xFFF << 12 | 5, 2 << 24 | 5]
    assert (out.events['t'] // 1000).tolist() == want_us
    assert out.triggers.tolist() == [((2 << 24 | 5) * 1000, 1, 1)]


def test_reset_forgets_the_clock():
    decoder = EventPacketDecoder()
    decoder.decode(_packet([0x8001, 0x6002]))
    assert len(decoder.decode(_packet([0x0001, 0x2003])).events) == 1
    decoder.reset()
    out = decoder.decode(_packet([0x0001, 0x2003]))
    assert len(out.events) == 0 and out.first_sensor_time_ns is None


# Small sets make the edge cases frequent: TIME_HIGH falling back by exactly 10 or 11 steps
# (noise vs wrap), rows and columns at the sensor edge, vector bits at both ends.
_TIME_VALUES = st.one_of(st.integers(0, 0xFFF),
                         st.sampled_from([0, 1, 10, 11, 12, 21, 22, 0xFF5, 0xFFF]))
_VALUES = st.one_of(st.integers(0, 0xFFF),
                    st.sampled_from([0, 1, 2, 9, 10, 0x7FF, 0x800, 0x801, 0x80A, 0xF00, 0xFFF]))
_SIZES = st.one_of(st.integers(0, 2100), st.sampled_from([0, 1, 2, 10, 12, 2048]))
_WORD = st.one_of(
    st.tuples(st.sampled_from([0x0, 0x2, 0x3, 0x4, 0x5, 0xA, 0x7, 0xE, 0xF]), _VALUES),
    st.tuples(st.sampled_from([0x6, 0x8]), _TIME_VALUES))
_STREAM = st.tuples(st.booleans(), st.lists(_WORD, max_size=250)).map(
    lambda lead_words: [0x8001, 0x6002] * lead_words[0] + [c << 12 | v for c, v in lead_words[1]])


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(words=_STREAM, cuts=st.lists(st.integers(0, 250), max_size=5), width=_SIZES,
       height=_SIZES, until=st.none() | st.integers(0, 40_000_000_000),
       bad=st.none() | st.tuples(st.integers(0, 250), st.sampled_from([0x1, 0x9, 0xB, 0xD])))
def test_evt3_vectorised_matches_reference(words, cuts, width, height, until, bad):
    if bad is not None:
        words.insert(min(bad[0], len(words)), bad[1] << 12)
    bounds = [0, *sorted(min(c, len(words)) for c in cuts), len(words)]
    state = evt3.Evt3State()
    for lo, hi in zip(bounds, bounds[1:]):
        packet = np.array(words[lo:hi], '<u2')
        want = _or_error(evt3.reference_decode, packet, state, width, height, until)
        if isinstance(want, WireError):
            with pytest.raises(WireError) as err:
                evt3.decode_words(packet, state, width, height, until)
            assert err.value.offset == want.offset
            return
        got = evt3.decode_words(packet, state, width, height, until)
        assert np.array_equal(got.events, want.events)
        assert np.array_equal(got.triggers, want.triggers)
        assert (got.state, got.consumed, got.first_time_ns, got.next_time_ns) \
            == (want.state, want.consumed, want.first_time_ns, want.next_time_ns)
        if until is not None:
            # Resuming where the time limit stopped yields the rest of the packet.
            rest = _or_error(evt3.decode_words, packet[got.consumed:], got.state, width, height)
            full = _or_error(evt3.decode_words, packet, state, width, height)
            assert isinstance(rest, WireError) == isinstance(full, WireError)
            if not isinstance(full, WireError):
                assert np.array_equal(np.concatenate([got.events, rest.events]), full.events)
                assert rest.state == full.state
        state = got.state


def _or_error(decode, *args):
    try:
        return decode(*args)
    except WireError as exc:
        return exc


_SEEDS = (EVT3_TRIGGER, LIBCAER, EVPY_1, EVPY_2)


@settings(max_examples=800, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_messages_raise_only_wire_error(messages, data):
    raws = [r for name in _SEEDS for r in messages(name)[:2]] + [
        _packet([0x8001, 0x6002, 0x3010, 0x4FFF, 0x0005, 0x2007, 0xA101, 0x5003])]
    seed = data.draw(st.sampled_from(raws))
    msg = decode_event_packet(seed)
    lengths = [12, msg.encoding_offset, msg.events_offset - 4]  # frame_id, encoding, events
    raw = bytearray(seed)
    for _ in range(data.draw(st.integers(1, 3))):
        kind = data.draw(st.sampled_from(['truncate', 'flip', 'length']))
        pos = data.draw(st.integers(0, max(len(raw) - 1, 0)))
        if kind == 'truncate':
            del raw[pos:]
        elif kind == 'flip' and raw:
            raw[pos] = data.draw(st.integers(0, 255))
        elif kind == 'length':
            at = data.draw(st.sampled_from(lengths))
            huge = data.draw(st.sampled_from([2**31, 2**32 - 1, len(raw), 2**20 + 1, 0]))
            raw[at:at + 4] = huge.to_bytes(4, 'little')
    _decode_guarded(bytes(raw), data.draw(st.none() | st.integers(0, 2**64 - 1)))


@settings(max_examples=100, deadline=None)
@given(blob=st.binary(max_size=120), prefix=st.booleans())
def test_random_bytes_raise_only_wire_error(blob, prefix):
    _decode_guarded((b'\x00\x01\x00\x00' if prefix else b'') + blob, None)


def _decode_guarded(raw, until):
    """Decode; anything but success or WireError fails, and so does a huge allocation."""
    tracemalloc.start()
    try:
        EventPacketDecoder().decode(raw, until)
    except WireError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 256 * len(raw) + (1 << 20)


_TEXT = st.text(st.characters(blacklist_characters='\x00', blacklist_categories=['Cs']),
                max_size=9)


@settings(max_examples=100, deadline=None)
@given(sec=st.integers(0, 2**31 - 1), nanosec=st.integers(0, 999_999_999), frame_id=_TEXT,
       height=st.integers(0, 2**32 - 1), width=st.integers(0, 2**32 - 1),
       seq=st.integers(0, 2**64 - 1), time_base=st.integers(0, 2**64 - 1), encoding=_TEXT,
       is_bigendian=st.booleans(), payload=st.binary(max_size=21))
def test_encode_matches_rosbags_serialize(typestore, sec, nanosec, frame_id, height, width,
                                          seq, time_base, encoding, is_bigendian, payload):
    types = typestore.types
    ref = types[EVENT_PACKET](
        header=types['std_msgs/msg/Header'](
            stamp=types['builtin_interfaces/msg/Time'](sec=sec, nanosec=nanosec),
            frame_id=frame_id),
        height=height, width=width, seq=seq, time_base=time_base, encoding=encoding,
        is_bigendian=is_bigendian, events=np.frombuffer(payload, np.uint8))
    header = Header(sec * 1_000_000_000 + nanosec, frame_id)
    raw = encode_event_packet(header, height, width, seq, time_base, encoding, payload,
                              is_bigendian)
    assert raw == bytes(typestore.serialize_cdr(ref, EVENT_PACKET))
    msg = decode_event_packet(raw)
    assert (msg.header, msg.height, msg.width, msg.seq, msg.time_base, msg.encoding,
            msg.is_bigendian, msg.events.tobytes()) \
        == (header, height, width, seq, time_base, encoding, is_bigendian, payload)
