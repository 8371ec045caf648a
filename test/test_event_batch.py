"""Batched EventPacket decoding: the same packets, errors and state as decoding one by one."""

import dataclasses

from hypothesis import given, HealthCheck, settings, strategies as st
import numpy as np
import pytest
from test_event_packet import _raw, ALL_BAGS, EVPY_1, EVPY_1_ROS1
from test_stream import jittery_packets

from gep_ros.bag import BagMessage, BagReader, TopicInfo
from gep_ros.cli.bag_cmd import decode_topic
from gep_ros.msgtypes import EVENT_PACKET
from gep_ros.wire import event_packet, evt3
from gep_ros.wire.cdr import WireError
from gep_ros.wire.event_packet import (decode_event_packet, DecodedPacket, encode_event_packet,
                                       EventPacketDecoder, read_event_packet)
from gep_ros.wire.events import concat_events
from gep_ros.wire.std import Header
from gep_ros.wire.stream import EventStream


@pytest.fixture
def messages(bags_dir, typestore):
    return lambda name: _raw(str(bags_dir / name), typestore)


def _sequential(decoder, raws):
    out = []
    for raw in raws:
        try:
            out.append(decoder.decode(raw))
        except WireError as exc:
            out.append(exc)
    return out


def _batched(decoder, raws, cuts=(64,)):
    """decode_batch over consecutive slices of raws whose lengths cycle through cuts."""
    out, start, i = [], 0, 0
    while start < len(raws):
        size = cuts[i % len(cuts)]
        out += decoder.decode_batch(raws[start:start + size])
        start, i = start + size, i + 1
    return out


def _assert_same(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert type(g) is type(w)
        if isinstance(w, WireError):
            assert (g.msgtype, g.field, g.offset, g.problem) \
                == (w.msgtype, w.field, w.offset, w.problem)
            continue
        for f in dataclasses.fields(DecodedPacket):
            a, b = getattr(g, f.name), getattr(w, f.name)
            if isinstance(b, np.ndarray):
                assert a.dtype == b.dtype and np.array_equal(a, b), f.name
            else:
                assert a == b, f.name


@pytest.mark.parametrize('name', ALL_BAGS)
@pytest.mark.parametrize('cuts', [(64,), (1000,), (5, 1, 17, 2)])
def test_batch_matches_sequential_on_real_bags(messages, name, cuts):
    raws = messages(name)
    seq, bat = EventPacketDecoder(), EventPacketDecoder()
    want = _sequential(seq, raws)
    got = _batched(bat, raws, cuts)
    _assert_same(got, want)
    assert bat._states == seq._states
    assert not any(isinstance(w, WireError) for w in want)


def test_batch_decodes_parsed_evt3_packets_in_runs(messages, monkeypatch):
    # Packet 0 makes the clock valid; every later one is decoded within a run. (Serialized
    # packets go through the kernel one call each, parsed EventPackets in runs.)
    runs, decode_run = [], evt3.decode_run

    def spy(words, bounds, *args, **kwargs):
        runs.append(len(bounds) - 1)
        return decode_run(words, bounds, *args, **kwargs)

    monkeypatch.setattr(evt3, 'decode_run', spy)
    parsed = [decode_event_packet(raw) for raw in messages(EVPY_1)]
    got = EventPacketDecoder().decode_batch(parsed)
    assert sum(runs) == len(parsed) - 1 and len(runs) < len(parsed) // 10
    _assert_same(got, _sequential(EventPacketDecoder(), messages(EVPY_1)))


def _packet(words, encoding='evt3', width=640, height=480, seq=0):
    return encode_event_packet(Header(seq, 'f'), height, width, seq, 7_000_000, encoding,
                               np.array(words, '<u2'))


# Word streams as in test_event_packet, with a valid clock early most of the time.
_TIME_VALUES = st.one_of(st.integers(0, 0xFFF),
                         st.sampled_from([0, 1, 10, 11, 12, 21, 22, 0xFF5, 0xFFF]))
_VALUES = st.one_of(st.integers(0, 0xFFF),
                    st.sampled_from([0, 1, 2, 9, 10, 0x7FF, 0x800, 0x801, 0x80A, 0xF00, 0xFFF]))
_WORD = st.one_of(
    st.tuples(st.sampled_from([0x0, 0x2, 0x3, 0x4, 0x5, 0xA, 0x7, 0xE, 0xF]), _VALUES),
    st.tuples(st.sampled_from([0x6, 0x8]), _TIME_VALUES))
_EDGES = st.lists(_WORD, max_size=200).map(lambda words: [c << 12 | v for c, v in words])
# Bulk: random words with realistic type frequencies, many events and some triggers.
_TYPES = np.array([0x0, 0x2, 0x3, 0x4, 0x5, 0x6, 0x8, 0xA, 0x7, 0xE, 0xF])
_FREQS = np.array([20, 25, 8, 8, 8, 15, 5, 3, 3, 3, 2]) / 100


def _bulk(seed, n):
    rng = np.random.default_rng(seed)
    types = _TYPES[rng.choice(_TYPES.size, n, p=_FREQS)]
    values = rng.integers(0, 0x1000, n)
    values[types <= 0x3] &= 0x9FF  # rows and columns mostly on a 640 x 480 sensor
    return (types << 12 | values).tolist()


_STREAM = st.tuples(st.integers(0, 3), _EDGES, st.integers(0, 2**32 - 1),
                    st.integers(0, 4000), st.integers(0, 200)).map(
    lambda a: [0x8001, 0x6002] * min(a[0], 1) + a[1][:a[4]] + _bulk(a[2], a[3]) + a[1][a[4]:])
# What goes wrong with a packet: the message cut short, an unsupported EVT3 word, an
# unknown encoding, an odd number of bytes; or a packet of another stream state: another
# geometry, libcaer_cmp words, mono records.
_FAULTS = st.sampled_from(['truncate', 'word', 'encoding', 'odd', 'geometry', 'libcaer_cmp',
                           'mono'])


def _faulty(words, fault, where, seq):
    if fault == 'word':
        words = list(words)
        words.insert(where % (len(words) + 1), [0x1, 0x9, 0xB, 0xC, 0xD][where % 5] << 12)
        return _packet(words, seq=seq)
    if fault == 'geometry':
        return _packet(words, width=320, height=240, seq=seq)
    if fault in ('encoding', 'libcaer_cmp'):
        return _packet(words, 'evt4' if fault == 'encoding' else fault, seq=seq)
    if fault == 'mono':
        return _packet(words[:len(words) // 4 * 4], 'mono', seq=seq)
    raw = _packet(words, seq=seq)
    if fault == 'odd':
        return encode_event_packet(Header(seq, 'f'), 480, 640, seq, 0, 'evt3',
                                   np.array(words, '<u2').tobytes() + b'\x01')
    return raw[:where % len(raw)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(words=_STREAM, cuts=st.lists(st.integers(0, 4500), max_size=40),
       faults=st.lists(st.tuples(st.integers(0, 60), _FAULTS, st.integers(0, 10**6)),
                       max_size=6),
       width=st.sampled_from([640, 9, 2048]), height=st.sampled_from([480, 2, 2048]),
       batches=st.lists(st.integers(1, 70), min_size=1, max_size=5),
       run_words=st.sampled_from([1, 16, 300, event_packet.RUN_WORDS]), parsed=st.booleans())
def test_batch_matches_sequential_on_generated_streams(words, cuts, faults, width, height,
                                                       batches, run_words, parsed):
    bounds = [0, *sorted(min(c, len(words)) for c in cuts), len(words)]
    packets = [words[a:b] for a, b in zip(bounds, bounds[1:])]
    raws = [encode_event_packet(Header(i, 'f'), height, width, i, 0, 'evt3',
                                np.array(p, '<u2')) for i, p in enumerate(packets)]
    for pos, fault, where in faults:
        source = packets[where % len(packets)]
        raws.insert(pos % (len(raws) + 1), _faulty(source, fault, where, len(raws)))
    seq, bat = EventPacketDecoder(), EventPacketDecoder()
    want = _sequential(seq, raws)
    if parsed:  # EventPackets, as decode_batch takes them too: these go in runs
        raws = [_parsed_or_raw(raw) for raw in raws]
    saved = event_packet.RUN_WORDS
    event_packet.RUN_WORDS = run_words
    try:
        got = _batched(bat, raws, batches)
    finally:
        event_packet.RUN_WORDS = saved
    _assert_same(got, want)
    assert bat._states == seq._states


def test_bad_word_in_a_run_fails_only_its_packet():
    lead = _packet([0x8001, 0x6002])
    good = [_packet([0x0005, 0x2007 + i, 0x6003 + i]) for i in range(6)]
    bad = _packet([0x0006, 0x2001, 0xC000, 0x2002])
    raws = [lead, *good[:3], bad, *good[3:]]
    want = _sequential(EventPacketDecoder(), raws)
    got = EventPacketDecoder().decode_batch(raws)
    _assert_same(got, want)
    assert isinstance(got[4], WireError) and got[4].offset \
        == decode_event_packet(bad).events_offset + 4
    assert all(isinstance(g, DecodedPacket) and len(g.events) == 1 for g in got[1:4] + got[5:])


def test_decode_run_needs_a_valid_clock_and_sane_bounds():
    words = np.array([0x8001, 0x6002, 0x2003], '<u2')
    with pytest.raises(ValueError, match='valid clock'):
        evt3.decode_run(words, [0, 3], evt3.Evt3State(), 640, 480)
    valid = evt3.Evt3State(valid=True)
    for bounds in ([0, 2], [1, 3], [0, 2, 1, 3], []):
        with pytest.raises(ValueError, match='bounds'):
            evt3.decode_run(words, bounds, valid, 640, 480)
    run = evt3.decode_run(words, [0, 1, 1, 3], valid, 640, 480)
    assert run.events_at.tolist() == [0, 0, 0, 1]
    assert run.start_time_us.tolist() == [0, 1 << 12, 1 << 12]


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_fast_header_path_matches_the_field_reader(messages, data):
    seeds = [r for name in ALL_BAGS for r in messages(name)[:1]] + [
        _packet([0x8001, 0x6002]), _packet([]),
        encode_event_packet(Header(3, 'abcdefg'), 1, 2, 3, 4, 'mono', bytes(8))]
    raw = bytearray(data.draw(st.sampled_from(seeds)))
    msg = read_event_packet(bytes(raw))
    lengths = [12, msg.encoding_offset, msg.events_offset - 4]
    for _ in range(data.draw(st.integers(0, 3))):
        kind = data.draw(st.sampled_from(['truncate', 'flip', 'length', 'append']))
        pos = data.draw(st.integers(0, max(len(raw) - 1, 0)))
        if kind == 'truncate':
            del raw[pos:]
        elif kind == 'flip' and raw:
            raw[pos] = data.draw(st.integers(0, 255))
        elif kind == 'length':
            at = data.draw(st.sampled_from(lengths))
            value = data.draw(st.integers(0, 40) | st.sampled_from([2**31, 2**32 - 1]))
            raw[at:at + 4] = value.to_bytes(4, 'little')
        else:
            raw += bytes(data.draw(st.integers(1, 5)))
    raw = bytes(raw)
    fast, slow = _or_error(decode_event_packet, raw), _or_error(read_event_packet, raw)
    assert type(fast) is type(slow)
    if isinstance(slow, WireError):
        assert str(fast) == str(slow)
        return
    for f in dataclasses.fields(slow):
        a, b = getattr(fast, f.name), getattr(slow, f.name)
        if isinstance(b, np.ndarray):
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
        else:
            assert a == b, f.name


def _parsed_or_raw(raw):
    try:
        return decode_event_packet(raw)
    except WireError:
        return raw


def _or_error(decode, *args):
    try:
        return decode(*args)
    except WireError as exc:
        return exc


def test_big_endian_cdr_still_decodes():
    raw = bytearray(_packet([0x8001, 0x6002]))
    raw[1] = 0  # big-endian: every length and scalar reads differently, through the reader
    with pytest.raises(WireError) as fast:
        decode_event_packet(bytes(raw))
    with pytest.raises(WireError) as slow:
        read_event_packet(bytes(raw))
    assert str(fast.value) == str(slow.value)


@pytest.mark.parametrize('clock', ['ros', 'sensor'])
def test_stream_batch_matches_decode(clock):
    packets, _ = jittery_packets(seconds=0.5)
    raws = list(packets)
    raws[7] = raws[7][:40]
    raws.insert(20, b'\x00\x01')
    raws.insert(33, _packet([0x8001, 0x6002, 0x9000]))
    one, many = EventStream(EVENT_PACKET, clock), EventStream(EVENT_PACKET, clock)
    want = []
    for raw in raws:
        try:
            want.append(one.decode(raw))
        except WireError as exc:
            want.append(exc)
    got = []
    for a in range(0, len(raws), 16):
        got += many.decode_batch(raws[a:a + 16])
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert type(g) is type(w)
        if isinstance(w, WireError):
            assert str(g) == str(w)
        else:
            assert np.array_equal(g.events, w.events) and np.array_equal(g.triggers, w.triggers)
            assert (g.header, g.width, g.height) == (w.header, w.width, w.height)
    assert many.stats == one.stats
    assert list(many.stats.rejected) == list(one.stats.rejected)
    assert many._anchor == one._anchor and many._offsets == one._offsets


class _ListReader:
    """The part of BagReader that decode_topic uses, over a list of BagMessages."""

    def __init__(self, msgs):
        self.msgs = msgs
        self.topics = {'/events': TopicInfo(EVENT_PACKET, len(msgs))}

    def messages(self, topics):
        return iter(self.msgs)


def _decode_topic_one_by_one(reader, topic, clock):
    """decode_topic as it was before batching: one EventStream.decode per message."""
    stream = EventStream(reader.topics[topic].msgtype, clock)
    events, triggers, sensor = [], [], None
    for msg in reader.messages([topic]):
        if msg.error:
            stream.stats.reject(msg.error[:120])
            continue
        try:
            out = stream.decode(msg.data)
        except WireError:
            continue
        events.append(out.events)
        triggers.append(out.triggers)
        sensor = (out.width, out.height)
    return concat_events(events), np.concatenate(triggers), stream, sensor


@pytest.mark.parametrize('name', [EVPY_1, EVPY_1_ROS1])
@pytest.mark.parametrize('clock', ['ros', 'sensor'])
def test_decode_topic_in_batches_matches_one_by_one(bags_dir, name, clock):
    with BagReader(bags_dir / name) as reader:
        msgs = list(reader.messages())
    rng = np.random.default_rng(5)
    for i in sorted(rng.choice(len(msgs), 12, replace=False), reverse=True):
        m = msgs[i]
        if i % 3 == 0:  # a message the bag reader could not convert
            msgs[i] = BagMessage(m.topic, m.msgtype, m.time_ns, b'', f'not convertible {i}')
        elif i % 3 == 1:
            msgs[i] = BagMessage(m.topic, m.msgtype, m.time_ns, m.data[:-int(i) % 50 - 1])
        else:
            msgs.insert(i, BagMessage(m.topic, m.msgtype, m.time_ns, _packet([0xD000])))
    want = _decode_topic_one_by_one(_ListReader(msgs), '/events', clock)
    got = decode_topic(_ListReader(msgs), '/events', clock)
    for a, b in zip(got[:2], want[:2]):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert got[2].stats == want[2].stats and got[3] == want[3]
    assert list(got[2].stats.rejected) == list(want[2].stats.rejected)
    assert sum(want[2].stats.rejected.values()) == 12
