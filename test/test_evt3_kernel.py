"""The compiled EVT3 kernel against the numpy decoder it replaced and the per-word reference.

`evt3.decode_words` / `decode_run` run the C kernel (`gep_ros/wire/_kernels.c`);
`evt3_numpy` is the vectorised numpy decoder (an independent second implementation) and
`evt3.reference_decode` a per-word port of event_camera_codecs. Every result must agree to
the bit: events, triggers, state, words consumed, first and next times, errors and their
offsets; on the real recordings one packet at a time and batched, and on generated word
streams rich in the groups that the kernel's fast path takes.
"""

from dataclasses import fields, make_dataclass
from pathlib import Path
import subprocess
import sys
import weakref

from hypothesis import given, HealthCheck, settings, strategies as st
import numpy as np
import pytest
from test_event_packet import _raw, EVPY_1, EVPY_2, EVT3_TRIGGER

from gep_ros.wire import evt3, evt3_numpy, libcaer
from gep_ros.wire.cdr import WireError
from gep_ros.wire.event_packet import (decode_event_packet, DecodedPacket,
                                       encode_event_packet, EventPacketDecoder)
from gep_ros.wire.events import EVENT_DTYPE
from gep_ros.wire.kernels import kernels
from gep_ros.wire.std import Header

REPO = Path(__file__).resolve().parents[1]
# The block decoders this CPU can run: 63-word blocks everywhere, 32-word AVX-512 blocks
# where the CPU has them (the default there). Each test that takes `blocks` runs on each.
BLOCK_PATHS = ['blocks63', 'wide32'] if kernels.wide_blocks() else ['blocks63']


@pytest.fixture(params=BLOCK_PATHS)
def blocks(request):
    before = kernels.wide_blocks(request.param == 'wide32')
    yield request.param
    kernels.wide_blocks(before)


def _or_error(decode, *args, **kwargs):
    try:
        return decode(*args, **kwargs)
    except WireError as exc:
        return exc


def _same_result(got, want):
    """Assert two Evt3Results (or two WireErrors) are equal in every field."""
    assert type(got) is type(want)
    if isinstance(want, WireError):
        assert (got.msgtype, got.field, got.offset, got.problem) \
            == (want.msgtype, want.field, want.offset, want.problem)
        return
    for name in ('events', 'triggers'):
        a, b = getattr(got, name), getattr(want, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    assert (got.state, got.consumed, got.first_time_ns, got.next_time_ns) \
        == (want.state, want.consumed, want.first_time_ns, want.next_time_ns)


def _payloads(bags_dir, typestore, name):
    msgs = [decode_event_packet(raw) for raw in _raw(str(bags_dir / name), typestore)]
    return msgs, [m.events.view('<u2') for m in msgs]


@pytest.mark.parametrize('name', [EVPY_1, EVT3_TRIGGER])
def test_real_recordings_packet_by_packet_and_batched(bags_dir, typestore, name, blocks):
    msgs, payloads = _payloads(bags_dir, typestore, name)
    width, height = msgs[0].width, msgs[0].height
    state = ours = evt3.Evt3State()
    for words in payloads:  # one packet at a time, as a live subscription
        want = evt3_numpy.decode_words(words, state, width, height)
        got = evt3.decode_words(words, ours, width, height)
        _same_result(got, want)
        state, ours = want.state, got.state
    # Batched: every packet after the first in one run, as decode_batch does.
    first = evt3.decode_words(payloads[0], evt3.Evt3State(), width, height).state
    words = np.concatenate(payloads[1:])
    bounds = np.cumsum([0] + [p.size for p in payloads[1:]])
    want = evt3_numpy.decode_run(words, bounds, first, width, height)
    got = evt3.decode_run(words, bounds, first, width, height)
    _same_result(got.result, want.result)
    for field in ('events_at', 'triggers_at', 'start_time_us'):
        assert getattr(got, field).tolist() == getattr(want, field).tolist(), field


@pytest.mark.parametrize('until', [14252072000, 14251634000, 14252063000, 0, 2**64 - 1])
def test_real_recording_decode_until(bags_dir, typestore, until):
    msgs, payloads = _payloads(bags_dir, typestore, EVT3_TRIGGER)
    state = ours = evt3.Evt3State()
    for words in payloads:
        want = evt3_numpy.decode_words(words, state, msgs[0].width, msgs[0].height, until)
        got = evt3.decode_words(words, ours, msgs[0].width, msgs[0].height, until)
        _same_result(got, want)
        state, ours = want.state, got.state


def test_libcaer_cmp_recording_matches_numpy(bags_dir, typestore):
    # libcaer_cmp reuses the EVT3 decoder without rollover and with a time offset.
    msgs, payloads = _payloads(bags_dir, typestore, EVPY_2)
    state = evt3.Evt3State()
    for msg, words in zip(msgs, payloads):
        renamed = (libcaer._CMP_TO_EVT3[words >> 12] << 12) | (words & 0xFFF)
        fresh = evt3.Evt3State(state.y, 0, 0, state.polarity, state.base_x, True)
        kwargs = {'rollover': False,
                  'time_offset_us': libcaer.cmp_time_offset_us(msg.time_base)}
        want = evt3_numpy.decode_words(renamed, fresh, msg.height, msg.width, **kwargs)
        got = evt3.decode_words(renamed, fresh, msg.height, msg.width, **kwargs)
        _same_result(got, want)
        state = got.state


# Word streams built from the groups of real recordings (an optional run of TIME_HIGHs, then
# TIME_LOW / ADDR_Y / ADDR_X, or ADDR_Y / ADDR_X), other words in between, at every offset.
_VALUE = st.one_of(st.integers(0, 0xFFF),
                   st.sampled_from([0, 1, 9, 10, 11, 0x7FF, 0x800, 0x801, 0xFF5, 0xFFF]))


def _groups(codes):
    return st.one_of(
        st.tuples(st.integers(0, 3), _VALUE, _VALUE, _VALUE, _VALUE).map(
            lambda g: [0x8000 | g[1]] * g[0] + [0x6000 | g[2], 0x0000 | g[3], 0x2000 | g[4]]),
        st.tuples(_VALUE, _VALUE).map(lambda g: [0x0000 | g[0], 0x2000 | g[1]]),
        # A row with many events: blocks of 32 words with up to 31 of them.
        st.tuples(_VALUE, st.lists(_VALUE, min_size=2, max_size=40)).map(
            lambda g: [0x0000 | g[0]] + [0x2000 | x for x in g[1]]),
        st.tuples(st.sampled_from(codes), _VALUE).map(lambda g: [g[0] << 12 | g[1]]))


def _steady_clock(words, steps):
    """Give the TIME_HIGHs a clock that mostly rises: steps of -12 (a wrap) to 3."""
    high = 0
    for k, w in enumerate(words):
        if w >> 12 == 0x8:
            high = (high + steps[k % len(steps)]) % 0x1000
            words[k] = 0x8000 | high
    return words


_ANY_CODE = [0x0, 0x2, 0x3, 0x4, 0x5, 0x6, 0x7, 0x8, 0xA, 0xE, 0xF]
_BLOCK_CODE = [0x0, 0x2, 0x6, 0x7, 0x8, 0xA, 0xE, 0xF]
# Any word type, or (long streams that the kernel decodes in blocks of 63 words) only the
# types a block takes, with a clock that wraps now and then.
_STREAM = st.one_of(
    st.tuples(st.booleans(), st.lists(_groups(_ANY_CODE), max_size=120)).map(
        lambda a: [0x8001, 0x6002] * a[0] + [w for group in a[1] for w in group]),
    st.tuples(st.booleans(), st.lists(_groups(_BLOCK_CODE), min_size=30, max_size=400),
              st.lists(st.integers(-12, 3), min_size=1, max_size=40)).map(
        lambda a: _steady_clock([0x8001, 0x6002] * a[0] + [w for g in a[1] for w in g], a[2])))
_SIZES = st.one_of(st.integers(0, 2100), st.sampled_from([0, 1, 10, 480, 640, 2048]))


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(words=_STREAM, cuts=st.lists(st.integers(0, 1200), max_size=6), width=_SIZES,
       height=_SIZES, until=st.none() | st.integers(0, 40_000_000_000),
       bad=st.none() | st.tuples(st.integers(0, 400), st.sampled_from([0x1, 0x9, 0xB, 0xD])))
def test_grouped_streams_match_numpy_and_reference(words, cuts, width, height, until, bad,
                                                   blocks):
    if bad is not None:
        words.insert(min(bad[0], len(words)), bad[1] << 12)
    bounds = [0, *sorted(min(c, len(words)) for c in cuts), len(words)]
    state = evt3.Evt3State()
    for lo, hi in zip(bounds, bounds[1:]):
        packet = np.array(words[lo:hi], '<u2')
        got = _or_error(evt3.decode_words, packet, state, width, height, until)
        _same_result(got, _or_error(evt3_numpy.decode_words, packet, state, width, height,
                                    until))
        _same_result(got, _or_error(evt3.reference_decode, packet, state, width, height,
                                    until))
        if isinstance(got, WireError):
            return
        state = got.state
    if not state.valid or until is not None:
        return
    # The same words as one run from a valid clock, split at the same bounds.
    run_words = np.array(words, '<u2')
    got = _or_error(evt3.decode_run, run_words, bounds, state, width, height)
    want = _or_error(evt3_numpy.decode_run, run_words, bounds, state, width, height)
    if isinstance(want, WireError):
        _same_result(got, want)
        return
    _same_result(got.result, want.result)
    for field in ('events_at', 'triggers_at', 'start_time_us'):
        assert getattr(got, field).tolist() == getattr(want, field).tolist(), field


@pytest.mark.parametrize('width', [640, 20])
def test_blocks_full_of_events(width, blocks):
    # Rows of 1 to 70 events, starting at many offsets of a block: blocks of few events and
    # of up to 31 (past two groups of eight records), and (width 20) events outside the
    # sensor among them.
    words = [0x8003, 0x6005]
    for k in range(1, 71):
        row = [0x2000 | (x * 7 + k) % 40 for x in range(k)]
        words += [0x7000] * (k % 5) + [0x0000 | k] + row
        words += [0x6000 | k, 0x8003]
    words = np.array(words, '<u2')
    got = evt3.decode_words(words, evt3.Evt3State(), width, 480)
    _same_result(got, evt3.reference_decode(words, evt3.Evt3State(), width, 480))
    assert len(got.events) == (sum(range(1, 71)) if width == 640 else 1248)


@pytest.mark.parametrize('row', [0x7FF, 0x800, 0xFFFF])
def test_a_row_carried_in_is_kept_whole(row, blocks):
    # A row above 11 bits can only come from a state built elsewhere; blocks hold 11 bits.
    words = np.array([0x2000 | x for x in range(200)] + [0x0005, 0x2001], '<u2')
    state = evt3.Evt3State(row, 2, 1 << 12, 0, 0, True)
    got = evt3.decode_words(words, state, 0x10000, 0x10000)
    _same_result(got, evt3_numpy.decode_words(words, state, 0x10000, 0x10000))
    assert got.events['y'].tolist() == [row] * 200 + [5]


def test_event_records_have_zeroed_padding():
    words = np.array([0x8001, 0x6002, 0x0005, 0x2007, 0x3010, 0x4FFF, 0xA101], '<u2')
    out = evt3.decode_words(words, evt3.Evt3State(), 640, 480)
    raw = out.events.view(np.uint8).reshape(-1, EVENT_DTYPE.itemsize)
    assert len(out.events) == 13 and not raw[:, 13:].any()
    assert not out.triggers.view(np.uint8).reshape(-1, 16)[:, 10:].any()


def test_packets_decode_with_the_kernel(bags_dir, typestore):
    # EventPacketDecoder goes through the kernel: the same packets as the numpy decoder.
    raws = _raw(str(bags_dir / EVPY_1), typestore)
    decoder, state = EventPacketDecoder(), evt3.Evt3State()
    for raw in raws[:50]:
        got = decoder.decode(raw)
        msg = decode_event_packet(raw)
        want = evt3_numpy.decode_words(msg.events.view('<u2'), state, msg.width, msg.height)
        state = want.state
        assert np.array_equal(got.events, want.events)
        assert got.first_sensor_time_ns == want.first_time_ns


def test_streams_interleaved_and_states_set_by_hand_keep_their_own_clock(bags_dir, typestore):
    # The kernel reuses the state it stored last while the states dict still holds that
    # object: two decoders of the same geometry taking turns, and a state put in by hand,
    # must each decode from their own state.
    raws = _raw(str(bags_dir / EVPY_1), typestore)
    first, second = raws[:40], raws[200:240]  # the second stream starts mid-recording
    alone = [_decode_each(EventPacketDecoder(), part) for part in (first, second)]
    a, b = EventPacketDecoder(), EventPacketDecoder()
    turns = [[], []]
    for one, two in zip(first, second):
        turns[0].append(a.decode(one))
        turns[1].append(b.decode(two))
    _same_packets(turns[0], alone[0])
    _same_packets(turns[1], alone[1])
    # b's state handed to a (the object the kernel stored last: its kept copy is used), then
    # a's earlier state (no longer the last stored: read from the tuple).
    (key, state_a), = a._states.items()
    assert b._states.keys() == {key}  # the same geometry
    a._states[key] = b._states[key]
    _same_packets([a.decode(first[20])], [_fresh_from(b._states[key], first[20])])
    a._states[key] = state_a
    _same_packets([a.decode(first[20])], [_fresh_from(state_a, first[20])])


def _fresh_from(state, raw):
    decoder = EventPacketDecoder()
    msg = decode_event_packet(raw)
    decoder._states[('evt3', msg.width, msg.height)] = evt3.Evt3State(*state)  # a copy
    return decoder.decode(msg)  # the general path


@pytest.mark.parametrize('module, importer', [
    ('gep_ros.wire._kernels', 'gep_ros.wire.evt3'),
    ('gep_model.events._kernels', 'gep_model.events.polarity_rgb'),
])
@pytest.mark.parametrize('stub, problem', [
    ('None', 'is not built or does not load'),
    ('types.SimpleNamespace(INTERFACE_VERSION=0, __file__="stale.so")',
     'was built from another version of its C source'),
])
def test_a_missing_or_stale_build_is_a_loud_import_error(module, importer, stub, problem):
    code = ('import sys, types; '
            f'sys.modules["{module}"] = {stub}; '
            f'import {importer}')
    out = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f'ImportError: {module}') and problem in last
    assert 'pip install -e .' in last and 'colcon build' in last


def _decode_each(decoder, items):
    out = []
    for item in items:
        try:
            out.append(decoder.decode(item))
        except WireError as exc:
            out.append(exc)
    return out


def _same_packets(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert type(g) is type(w)
        if isinstance(w, WireError):
            assert str(g) == str(w)
            continue
        for name in ('header', 'height', 'width', 'seq', 'time_base', 'encoding',
                     'first_sensor_time_ns', 'consumed', 'next_time_ns', 'done'):
            assert getattr(g, name) == getattr(w, name), name
        for name in ('events', 'triggers'):
            a, b = getattr(g, name), getattr(w, name)
            assert a.dtype == b.dtype and np.array_equal(a, b), name


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_one_call_path_equals_the_general_path(bags_dir, typestore, data, blocks):
    # Serialized packets take evt3_packet (layout, decode, state and packet in one kernel call);
    # parsed EventPackets the general path. Damaged bytes must fall back and fail alike.
    originals = _raw(str(bags_dir / EVT3_TRIGGER), typestore)[:6]
    raws = list(originals)
    for _ in range(data.draw(st.integers(0, 4))):
        k = data.draw(st.integers(0, len(raws) - 1))
        raw = bytearray(originals[k])
        kind = data.draw(st.sampled_from(['truncate', 'flip', 'word', 'encoding', 'odd']))
        pos = data.draw(st.integers(0, len(raw) - 1))
        if kind == 'truncate':
            del raw[pos:]
        elif kind == 'flip':
            raw[pos] = data.draw(st.integers(0, 255))
        elif kind == 'word':  # an unsupported word type in the payload
            msg = decode_event_packet(originals[k])
            at = msg.events_offset + 2 * data.draw(st.integers(0, msg.events.size // 2 - 1))
            raw[at + 1] = (raw[at + 1] & 0x0F) | (data.draw(st.sampled_from([1, 9, 11])) << 4)
        elif kind == 'encoding':
            msg = decode_event_packet(originals[k])
            raw[msg.encoding_offset + 4] = ord('E')
        else:
            raw += b'\x00'
        raws[k] = bytes(raw)
    via_kernel = _decode_each(EventPacketDecoder(), raws)
    general = EventPacketDecoder()
    parsed = []
    for raw in raws:
        try:
            parsed.append(decode_event_packet(raw))
        except WireError:
            parsed.append(raw)  # the general path raises for it too
    _same_packets(via_kernel, _decode_each(general, parsed))


def test_record_classes_without_slots_get_their_fields_by_name(bags_dir, typestore):
    # The kernel stores DecodedPacket's and Header's fields straight into their slots; the
    # fields of classes without slots are set by name. Both build the same packets.
    raws = _raw(str(bags_dir / EVT3_TRIGGER), typestore)[:8]
    want = _decode_each(EventPacketDecoder(), raws)
    plain = make_dataclass('Plain', [f.name for f in fields(DecodedPacket)])
    plain_header = make_dataclass('PlainHeader', [f.name for f in fields(Header)], frozen=True)
    kernels.setup_packets(plain, plain_header)
    try:
        got = _decode_each(EventPacketDecoder(), raws)
    finally:
        kernels.setup_packets(DecodedPacket, Header)
    assert [type(p) for p in got] == [plain] * len(raws)
    assert all(type(p.header) is plain_header for p in got)
    for g, w in zip(got, want):
        assert (g.header.stamp_ns, g.header.frame_id) == (w.header.stamp_ns, w.header.frame_id)
        for name in ('height', 'width', 'seq', 'time_base', 'encoding', 'first_sensor_time_ns',
                     'consumed', 'next_time_ns', 'done'):
            assert getattr(g, name) == getattr(w, name), name
        assert np.array_equal(g.events, w.events) and np.array_equal(g.triggers, w.triggers)
    assert type(EventPacketDecoder().decode(raws[0])) is DecodedPacket  # set back


def _vector_packet(seq, rows):
    """Return an evt3 packet of `rows` rows of 12-bit vectors, 3 of them (36 events) a row."""
    words = [0x8001, 0x6002]
    for row in range(rows):
        words += [row % 480, 0x3000 | (row % 8) << 4, 0x4FFF, 0x4FFF, 0x4FFF]
    return encode_event_packet(Header(seq, 'cam'), 480, 640, seq, 0, 'evt3',
                               np.array(words, '<u2'))


def test_pooled_arrays_stay_apart_and_grow_past_dense_packets(blocks):
    # Serialized packets decode into views of the decoder's chunks: every packet's arrays
    # must stay as decoded while later packets fill the chunk, replace it, or (vector words:
    # 36 events per 5 words) need more room than one event per word.
    raws = [_vector_packet(k, rows) for k, rows in enumerate([3, 40, 0, 2000, 1, 9000, 5])]
    raws += [encode_event_packet(Header(9, 'cam'), 480, 640, 9, 0, 'evt3', np.array(
        [0x8001, 0x6003, 0x0004, 0x2005, 0xA101, 0x0006, 0x2807], '<u2'))]
    decoder = EventPacketDecoder()
    got = [decoder.decode(raw) for raw in raws]
    kept = [(p.events.copy(), p.triggers.copy()) for p in got]
    want = _decode_each(EventPacketDecoder(), [decode_event_packet(raw) for raw in raws])
    _same_packets(got, want)
    assert [len(p.events) for p in got][:6] == [108, 1440, 0, 72000, 36, 324000]
    assert len(got[-1].triggers) == 1 and len(got[0].triggers) == 0
    for packet, (events, triggers) in zip(got, kept):
        assert np.array_equal(packet.events, events)
        assert np.array_equal(packet.triggers, triggers)
    # The batch path shares the pool and agrees too.
    _same_packets(EventPacketDecoder().decode_batch(raws), want)


def test_pooled_chunks_are_written_again_only_once_no_array_holds_them(bags_dir, typestore):
    # A real recording round after round through one decoder: chunks are recycled. Arrays
    # kept from earlier rounds (one packet in 300) must never be written over, and every
    # packet must equal the general path's.
    raws = _raw(str(bags_dir / EVPY_1), typestore)
    want = _decode_each(EventPacketDecoder(), [decode_event_packet(raw) for raw in raws])
    decoder, kept, earlier, recycled = EventPacketDecoder(), [], [], 0
    for _ in range(3):
        decoder.reset()
        got = [decoder.decode(raw) for raw in raws]
        _same_packets(got, want)
        chunks = {id(p.events.base): p.events.base for p in got if p.events.base is not None}
        recycled += sum(any(c is ref() for ref in earlier) for c in chunks.values())
        earlier = [weakref.ref(c) for c in chunks.values()]
        kept += [(p, p.events.copy()) for p in got[::300]]
        del got, chunks
    for packet, events in kept:
        assert np.array_equal(packet.events, events)
    assert recycled >= 4 and len(decoder._pool[5]) <= 3  # chunks come back; spares stay few
