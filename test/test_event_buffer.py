"""The per-camera event history: windows cut from it, and event arrays joined byte for byte."""

from hypothesis import given, settings, strategies as st
import numpy as np
import pytest

from gep_ros import event_buffer
from gep_ros.event_buffer import EventBuffer
from gep_ros.wire.events import concat_events, copy_events, EVENT_DTYPE, make_events
from gep_ros.wire.kernels import kernels

REORDER_NS = 1000


def _chunk(rng, start, n, spread):
    t = start + rng.integers(0, spread + 1, n)
    return make_events(rng.integers(0, 640, n), rng.integers(0, 480, n), t,
                       rng.integers(0, 2, n))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), chunks=st.integers(1, 40),
       back=st.lists(st.integers(0, 3 * REORDER_NS), min_size=1, max_size=40),
       segment=st.sampled_from([1, 16, 70, event_buffer.SEGMENT_EVENTS]),
       ordered=st.booleans())
def test_a_window_holds_exactly_the_kept_events_in_it(seed, chunks, back, segment, ordered):
    # Chunks arrive roughly in time order, some starting behind the newest event (within
    # the reorder allowance or beyond it, where their late events are dropped). Every window
    # must hold exactly the kept events inside it, in arrival order, whether the chunks lie
    # in one segment of the buffer's memory or across several, in time-sorted chunks (which
    # windows find by bisection within a run of them) or not.
    rng = np.random.default_rng(seed)
    default, event_buffer.SEGMENT_EVENTS = event_buffer.SEGMENT_EVENTS, segment
    try:
        buffer = EventBuffer(max_events=10**9, keep_ns=10**12, reorder_ns=REORDER_NS)
        _check_windows(rng, buffer, chunks, back, ordered)
    finally:
        event_buffer.SEGMENT_EVENTS = default


def _check_windows(rng, buffer, chunks, back, ordered):
    kept, now = [], 0
    for k in range(chunks):
        start = max(now - back[k % len(back)], 0)
        if ordered and k % 5:
            start = now  # runs of chunks in time order, broken by a few that go back
        events = _chunk(rng, start, int(rng.integers(1, 30)), 2000)
        if ordered:
            events = np.sort(events, order='t', kind='stable')
        newest = buffer.newest
        buffer.add(events)
        if newest is not None:
            events = events[events['t'] >= newest - REORDER_NS]
        kept.append(events)
        now = max(now, int(events['t'].max()) if len(events) else now)
    everything = np.concatenate(kept)
    for _ in range(8):
        t0 = int(rng.integers(-500, now + 500))
        t1 = t0 + int(rng.integers(0, 4000))
        got = buffer.window(t0, t1)
        want = everything[(everything['t'] >= t0) & (everything['t'] <= t1)]
        for name in EVENT_DTYPE.names:
            assert got[name].tolist() == want[name].tolist(), name
        assert not got.flags.writeable


def _packets(n, per_packet=100, step=1000, seed=0):
    """Return n in-order packets of per_packet time-sorted events, one every `step` ns."""
    rng = np.random.default_rng(seed)
    packets = [_chunk(rng, k * step, per_packet, step - 1) for k in range(n)]
    return [np.sort(packet, order='t', kind='stable') for packet in packets]


def test_windows_of_in_order_packets_are_read_only_views_that_stay_valid(monkeypatch):
    # The node's case: packets in order. A window is a view of the segment its chunks were
    # copied into (no copy on the latency path), read-only, and it keeps its events while the
    # buffer moves on to new segments and forgets the old chunks.
    monkeypatch.setattr(event_buffer, 'SEGMENT_EVENTS', 3000)  # 30 packets a segment
    buffer = EventBuffer(max_events=2500, keep_ns=10**12, reorder_ns=REORDER_NS)
    packets = _packets(80)
    windows = []
    for k, packet in enumerate(packets):
        buffer.add(packet)
        if k >= 11:
            t1 = k * 1000 + 500  # the middle of packet k: a boundary chunk cut in two
            got = buffer.window(t1 - 10_000, t1)
            everything = np.concatenate(packets[:k + 1])
            want = everything[(everything['t'] >= t1 - 10_000) & (everything['t'] <= t1)]
            assert got.tolist() == want.tolist()
            windows.append((got, want))
            segment_of = {id(buffer.chunks[-1][2].base)}
            if k % 30 >= 11:  # the window's chunks all lie in the current segment
                assert id(got.base) in segment_of, k
                # found by bisection in their run, not chunk by chunk
                assert buffer._run_window(t1 - 10_000, t1) is not None
    everything = np.concatenate(packets)
    for k in range(62, 75):  # windows from a chunk's last event to another's first, exactly
        t0, t1 = int(packets[k]['t'][-1]), int(packets[k + 3]['t'][0])
        want = everything[(everything['t'] >= t0) & (everything['t'] <= t1)]
        assert buffer._run_window(t0, t1) is not None
        assert buffer.window(t0, t1).tolist() == want.tolist()
    assert buffer.dropped['overflow'] > 0  # old chunks were forgotten meanwhile
    for got, want in windows:  # and the windows did not change
        assert got.tolist() == want.tolist()
        with pytest.raises(ValueError, match='read-only'):
            got['x'][0] = 1
    copies = sum(got.base is None for got, _ in windows)
    assert 0 < copies <= len(windows) // 3  # only windows across two segments are copies
    events, t0 = buffer.last(79_500, 250)
    everything = np.concatenate(packets)
    want = everything[everything['t'] <= 79_500][-250:]  # in order: the last 250
    assert events.tolist() == want.tolist()
    assert t0 == int(events['t'].min()) and not events.flags.writeable


@pytest.mark.parametrize('shuffled', [None, 1, 3])
def test_last_events_are_the_latest_by_time(shuffled):
    # window.events mode: the last n events at or before t1. In-order packets give the tail
    # of their view; a packet whose times are out of order is sorted (stably) first.
    packets = _packets(5)
    if shuffled is not None:
        packets[shuffled] = packets[shuffled][::-1].copy()
    buffer = EventBuffer(max_events=10**6, keep_ns=10**12, reorder_ns=REORDER_NS)
    for packet in packets:
        buffer.add(packet)
    everything = np.concatenate(packets)
    for t1, n in ((4_500, 250), (3_999, 150), (10**6, 10), (10**6, 10**4)):
        events, t0 = buffer.last(t1, n)
        before = everything[everything['t'] <= t1]
        if n < len(before):  # the latest n by time
            want = before[np.argsort(before['t'], kind='stable')][-n:]
        else:  # all of them, in arrival order, as a window gives them
            want = before
        assert events.tolist() == want.tolist()
        assert t0 == int(want['t'].min()) and not events.flags.writeable
        if shuffled is None and n < len(before):
            assert events.base is not None  # the tail of the buffer's view, not a copy


def test_joined_events_have_zero_padding_and_every_field():
    rng = np.random.default_rng(0)
    parts = []
    for n in (3, 0, 5, 1):
        part = np.empty(n, EVENT_DTYPE)
        part.view(np.uint8)[:] = rng.integers(0, 256, 16 * n, dtype=np.uint8)  # any padding
        parts.append(part)
    parts.append(np.concatenate([parts[0], parts[2]])[::2])  # a strided view
    joined = concat_events(parts)
    for name in EVENT_DTYPE.names:
        assert joined[name].tolist() == np.concatenate([p[name] for p in parts]).tolist()
    assert not joined.view(np.uint8).reshape(-1, 16)[:, 13:].any()
    # Arrays of another layout are joined by numpy, into zeroed memory.
    other = np.zeros(2, [('t', '<i8'), ('x', '<u2'), ('y', '<u2'), ('p', 'u1')])
    assert concat_events([other, other]).tolist() == np.concatenate([other, other]).tolist()
    assert len(concat_events([])) == 0


def test_a_small_buffer_takes_small_segments():
    buffer = EventBuffer(max_events=100, keep_ns=10**12, reorder_ns=REORDER_NS)
    buffer.add(_packets(1)[0])
    assert len(buffer.chunks[0][2].base) == 400
    buffer.add(_packets(1, per_packet=1000, seed=1)[0])
    assert len(buffer.chunks[-1][2].base) == 1000  # a packet larger than that: its own


def test_events_of_another_layout_are_kept_as_event_records():
    # Fields by name into the buffer's records, padding zeroed.
    other = np.zeros(3, [('p', 'u1'), ('x', '<u2'), ('y', '<u2'), ('t', '<i8')])
    other['t'], other['x'], other['y'], other['p'] = [5, 6, 7], [1, 2, 3], [4, 5, 6], [1, 0, 1]
    buffer = EventBuffer(max_events=100, keep_ns=10**12, reorder_ns=REORDER_NS)
    buffer.add(np.ones(2, EVENT_DTYPE))  # padding of ones in the segment before
    buffer.add(other)
    got = buffer.window(5, 7)
    assert got.dtype == EVENT_DTYPE
    assert got.tolist() == [(5, 1, 4, 1), (6, 2, 5, 0), (7, 3, 6, 1)]
    assert not got.view(np.uint8).reshape(-1, 16)[:, 13:].any()


def test_records_are_copied_into_the_buffer_with_zero_padding():
    # The compiled copy (kernels.copy_events) against numpy's (events.copy_events), padding
    # of any bytes in; and through the buffer, whose windows are then byte for byte the same
    # as concat_events of what was added.
    rng = np.random.default_rng(5)
    src = np.empty(37, EVENT_DTYPE)
    src.view(np.uint8)[:] = rng.integers(0, 256, 16 * 37, dtype=np.uint8)
    ours, numpys = np.empty_like(src), np.empty_like(src)
    kernels.copy_events(src, ours)
    copy_events(numpys, src)
    assert ours.tobytes() == numpys.tobytes()
    assert ours.tolist() == src.tolist() and not ours.view(np.uint8).reshape(-1, 16)[:, 13:].any()
    with pytest.raises(ValueError, match='as many records'):
        kernels.copy_events(src, ours[:-1])
    with pytest.raises(TypeError, match='writable'):
        kernels.copy_events(src, np.frombuffer(bytes(16 * 37), EVENT_DTYPE))
    src['t'] = np.arange(37)
    buffer = EventBuffer(max_events=100, keep_ns=10**12, reorder_ns=REORDER_NS)
    buffer.add(src[:20])
    buffer.add(src[20:])
    assert buffer.window(0, 36).tobytes() == concat_events([src]).tobytes()
