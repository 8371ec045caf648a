"""The per-camera event history: windows cut from it, and event arrays joined byte for byte."""

from hypothesis import given, settings, strategies as st
import numpy as np

from gep_ros.event_buffer import EventBuffer
from gep_ros.wire.events import concat_events, EVENT_DTYPE, make_events

REORDER_NS = 1000


def _chunk(rng, start, n, spread):
    t = start + rng.integers(0, spread + 1, n)
    return make_events(rng.integers(0, 640, n), rng.integers(0, 480, n), t,
                       rng.integers(0, 2, n))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), chunks=st.integers(1, 40),
       back=st.lists(st.integers(0, 3 * REORDER_NS), min_size=1, max_size=40))
def test_a_window_holds_exactly_the_kept_events_in_it(seed, chunks, back):
    # Chunks arrive roughly in time order, some starting behind the newest event (within
    # the reorder allowance or beyond it, where their late events are dropped). Every window
    # must hold exactly the kept events inside it, in arrival order.
    rng = np.random.default_rng(seed)
    buffer = EventBuffer(max_events=10**9, keep_ns=10**12, reorder_ns=REORDER_NS)
    kept, now = [], 0
    for k in range(chunks):
        start = max(now - back[k % len(back)], 0)
        events = _chunk(rng, start, int(rng.integers(1, 30)), 2000)
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
