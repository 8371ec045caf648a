"""Event streams on the ROS clock: EventPacket sensor time mapped through header stamps."""

import numpy as np
import pytest

from gep_ros.bench.wire import NumpyClockStream
from gep_ros.msgtypes import EVENT_PACKET
from gep_ros.wire.cdr import WireError
from gep_ros.wire.event_packet import encode_event_packet
from gep_ros.wire.events import EVENT_DTYPE, make_events, TRIGGER_DTYPE
from gep_ros.wire.evt3_encoder import Evt3Encoder
from gep_ros.wire.kernels import kernels
from gep_ros.wire.std import Header
from gep_ros.wire.stream import EventStream, shift_times, shift_times_numpy, SLEW

OFFSET = 1_700_000_000 * 10**9  # sensor clock 0 = this ROS time


def jittery_packets(seconds=3.0, packet_ms=5, seed=0, first_latency_ms=6.0):
    """EVT3 packets stamped as a driver with 0..5 ms receive latency would stamp them."""
    rng = np.random.default_rng(seed)
    n = int(seconds * 200_000)
    t = np.sort(rng.integers(0, int(seconds * 1e6), n)) * 1000  # whole microseconds
    events = make_events(rng.integers(0, 640, n), rng.integers(0, 480, n), t,
                         rng.integers(0, 2, n))
    edges = np.searchsorted(t, np.arange(0, int(seconds * 1e9) + 1, packet_ms * 10**6))
    encoder, packets, truth, start = Evt3Encoder(), [], [], None
    for seq, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        chunk = events[a:b]
        start = int(chunk['t'][0]) if start is None else start
        latency = first_latency_ms * 1e6 if seq == 0 else rng.uniform(0, 5e6)
        packets.append(encode_event_packet(Header(OFFSET + start + int(latency), 'cam'), 480,
                                           640, seq, 0, 'evt3', encoder.encode(chunk)))
        truth.append(chunk['t'] + OFFSET)
        start = int(chunk['t'][-1])
    return packets, np.concatenate(truth)


def test_ros_clock_is_monotonic_and_converges_to_the_lowest_latency():
    packets, truth = jittery_packets()
    stream = EventStream(EVENT_PACKET, 'ros')
    t = np.concatenate([stream.decode(p).events['t'] for p in packets])
    assert len(t) == len(truth)
    assert np.all(np.diff(t) >= 0)
    error = t - truth
    # Latency never makes events early, and the 6 ms of the first packet fade out at the
    # slew rate; after a second only the smallest latencies seen remain (well under 1 ms).
    assert error.min() >= 0
    assert error[0] == 6_000_000
    settled = truth >= truth[0] + 10**9
    assert error[settled].max() < 1_000_000
    half = truth >= truth[0] + int(6e6 / SLEW / 2)
    assert error[half].max() < 6_000_000


def test_sensor_clock_keeps_the_camera_time():
    packets, truth = jittery_packets(seconds=0.2)
    stream = EventStream(EVENT_PACKET, 'sensor')
    t = np.concatenate([stream.decode(p).events['t'] for p in packets])
    np.testing.assert_array_equal(t, truth - OFFSET)


def test_reset_starts_a_new_clock_estimate():
    packets, _ = jittery_packets(seconds=0.2)
    stream = EventStream(EVENT_PACKET, 'ros')
    for p in packets:
        stream.decode(p)
    stream.reset()
    again = stream.decode(packets[0]).events['t']
    first = EventStream(EVENT_PACKET, 'ros').decode(packets[0]).events['t']
    np.testing.assert_array_equal(again, first)


def test_rejected_messages_are_counted_by_reason():
    stream = EventStream(EVENT_PACKET)
    packets, _ = jittery_packets(seconds=0.05)
    stream.decode(packets[0])
    for bad in (packets[1][:30], b'\x00\x01'):
        with pytest.raises(WireError):
            stream.decode(bad)
    assert stream.stats.messages == 1 and sum(stream.stats.rejected.values()) == 2


def test_non_event_types_are_refused():
    with pytest.raises(WireError, match='not an event message type'):
        EventStream('sensor_msgs/msg/Image')


def _slewed_reference(times, start, offset, target):
    """Return the times on the clock, event by event: each clipped at the slew rate."""
    room = SLEW * np.maximum(times - start, 0)
    return times + offset + np.clip(target - offset, -room, room).astype(np.int64)


@pytest.mark.parametrize('seed', range(6))
def test_the_whole_packet_shift_equals_the_per_event_slew(seed):
    # Where no event of a packet is held back by the slew, all take the target at once (one
    # add); elsewhere each its own. Either way the times are those of the per-event clip.
    rng = np.random.default_rng(seed)
    stream = EventStream(EVENT_PACKET, 'ros')
    anchor = OFFSET + int(rng.integers(0, 10**6))
    stream._anchor = (10**9, anchor)
    for _ in range(20):
        start, offset = stream._anchor
        sensor = start + int(rng.integers(0, 3 * 10**7))
        target = offset + int(rng.integers(-2 * 10**6, 2 * 10**6))
        events = make_events([0] * 40, [0] * 40,
                             np.sort(rng.integers(sensor, sensor + 2 * 10**7, 40)), [0] * 40)
        want = _slewed_reference(events['t'].copy(), start, offset, target)
        stream._to_ros(sensor, target, events)
        assert events['t'].tolist() == want.tolist()


def _records(rng, n, low, high, dtype=EVENT_DTYPE):
    records = np.zeros(n, dtype)
    records['t'] = np.sort(rng.integers(low, high, n, dtype=np.int64, endpoint=True))
    return records


def _both_ways(records, start, offset, target):
    """Shift copies of records by the kernel and by numpy: ((t_max, times), (t_max, times))."""
    kernel, by_numpy = records.copy(), records.copy()
    got = shift_times(kernel, start, offset, target), kernel['t']
    want = shift_times_numpy(by_numpy, start, offset, target), by_numpy['t']
    return got, want


@pytest.mark.parametrize('seed', range(8))
def test_compiled_shift_equals_numpy(seed):
    rng = np.random.default_rng(seed)
    for dtype in (EVENT_DTYPE, TRIGGER_DTYPE):
        for _ in range(40):
            start = OFFSET // 10**6 + int(rng.integers(-10**7, 10**7))
            offset = OFFSET + int(rng.integers(-10**9, 10**9))
            # Events before and after the anchor, targets inside and outside the slew's room.
            records = _records(rng, int(rng.integers(1, 300)), start - 10**6, start + 10**8,
                               dtype)
            target = offset + int(rng.integers(-10**7, 10**7)) * int(rng.choice([0, 1, 100]))
            (t_max, got), (t_max_np, want) = _both_ways(records, start, offset, target)
            assert t_max == t_max_np == int(records['t'].max())
            assert got.tolist() == want.tolist()


def test_compiled_shift_at_the_edges():
    rng = np.random.default_rng(1)
    records = _records(rng, 64, 10**9, 2 * 10**9)
    start, offset = 10**9 - 10**6, 7
    room = SLEW * (int(records['t'].min()) - start)  # 50_000 ns: an exact float
    for target in (offset + 50_000, offset - 50_000, offset + 50_001, offset - 50_001):
        (_, got), (_, want) = _both_ways(records, start, offset, target)
        assert got.tolist() == want.tolist()
        # Up to the room every event takes the whole target; a nanosecond more holds the
        # first one back.
        whole = abs(target - offset) <= room
        assert (got[0] == records['t'][0] + target) == whole
    # int64 sums wrap as numpy's do; a time before the anchor gets no room at all.
    top = np.iinfo(np.int64).max
    records = _records(rng, 16, top - 10**6, top)
    for start, offset, target in ((top - 2 * 10**6, 10**6, 10**6 + 5), (top, 3, 10**9)):
        (_, got), (_, want) = _both_ways(records, start, offset, target)
        assert got.tolist() == want.tolist()
    # A large array: the passes run without the GIL.
    records = _records(rng, 70_000, 0, 10**9)
    (_, got), (_, want) = _both_ways(records, -10**8, 0, 10**8)
    assert got.tolist() == want.tolist()


def test_shift_goes_the_numpy_way_where_the_kernel_does_not():
    rng = np.random.default_rng(2)
    records = _records(rng, 32, 0, 10**6)
    # A difference float64 does not hold exactly, integers outside int64: the kernel
    # declines and leaves the records as they were.
    for args in ((0, 0, 2**60), (0, -2**62, 2**62), (2**70, 0, 0)):
        copy = records.copy()
        assert kernels.shift_times(copy, *args, SLEW) is None
        assert copy.tolist() == records.tolist()
    (_, got), (_, want) = _both_ways(records, 0, 0, 2**60)
    assert got.tolist() == want.tolist()
    with pytest.raises(OverflowError):
        shift_times(records.copy(), 2**70, 0, 5)  # numpy's error, as before
    # Strided views and read-only arrays are numpy's as well.
    strided = records.copy()
    shift_times(strided[::2], 0, 0, 10**5)
    expected = records.copy()
    shift_times_numpy(expected[::2], 0, 0, 10**5)
    assert strided.tolist() == expected.tolist()
    frozen = records.copy()
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match='read-only'):
        shift_times(frozen, 0, 0, 10)


def test_ros_clock_of_a_stream_is_the_same_through_numpy():
    packets, _ = jittery_packets(seconds=1.0, seed=3)
    fast = EventStream(EVENT_PACKET, 'ros')
    got = [fast.decode(p).events['t'].copy() for p in packets]
    anchors = fast._anchor
    slow = NumpyClockStream(EVENT_PACKET, 'ros')  # the benchmark's baseline
    want = [slow.decode(p).events['t'].copy() for p in packets]
    assert [a.tolist() for a in got] == [w.tolist() for w in want]
    assert anchors == slow._anchor


def _placed_both_ways(events, triggers, sensor, target, anchor):
    """EventStream._to_ros (the to_ros kernel) and NumpyClockStream's (Python, numpy)."""
    ours, ref = EventStream(EVENT_PACKET, 'ros'), NumpyClockStream(EVENT_PACKET, 'ros')
    ours._anchor = ref._anchor = anchor
    got = events.copy(), triggers.copy()
    want = events.copy(), triggers.copy()
    ours._to_ros(sensor, target, *got)
    ref._to_ros(sensor, target, *want)
    return (got, ours._anchor), (want, ref._anchor)


@pytest.mark.parametrize('seed', range(4))
def test_the_ros_clock_kernel_equals_the_python_placement(seed):
    # to_ros does a packet's placement in one call (the anchor, kept or taken afresh, both
    # arrays' shifts, the new anchor): the same times and anchors as the Python code with
    # numpy's shift, empty arrays, snaps and targets outside the slew's room included.
    rng = np.random.default_rng(seed)
    for _ in range(150):
        sensor = OFFSET // 10**6 + int(rng.integers(-10**8, 10**8))
        target = OFFSET + int(rng.integers(-10**7, 10**7))
        anchor = rng.choice(['none', 'near', 'far offset', 'far back'])
        a_t = sensor - int(rng.integers(0, 10**8))
        a_off = target + int(rng.integers(-10**6, 10**6)) * int(rng.choice([0, 1, 30]))
        anchor = {'none': None, 'near': (a_t, a_off), 'far offset': (a_t, a_off + 2 * 10**9),
                  'far back': (sensor + 2 * 10**9, a_off)}[anchor]
        events = _records(rng, int(rng.choice([0, 1, 40])), sensor - 10**6, sensor + 10**7)
        triggers = _records(rng, int(rng.choice([0, 3])), sensor, sensor + 10**7,
                            TRIGGER_DTYPE)
        (got, got_anchor), (want, want_anchor) = _placed_both_ways(events, triggers, sensor,
                                                                   target, anchor)
        assert got_anchor == want_anchor
        assert got[0].tolist() == want[0].tolist() and got[1].tolist() == want[1].tolist()


@pytest.mark.parametrize('events_first', [True, False])
def test_the_ros_clock_kernel_bounds_each_array_by_its_own_room(events_first):
    # The slew's room grows with the time since the anchor: an array that starts soon after
    # it is clipped while one that starts later takes the whole move. Each array's fast
    # check follows from its own earliest time, as shift_times on each does.
    rng = np.random.default_rng(7)
    start, offset = 10**9, 5 * 10**6
    soon, late = (start + 1000, start + 2000), (start + 10**9, start + 10**9 + 10)
    events = _records(rng, 4, *(soon if events_first else late))
    triggers = _records(rng, 2, *(late if events_first else soon), TRIGGER_DTYPE)
    target = offset + int(SLEW * 10**8)  # within the late array's room, past the early one's
    (got, got_anchor), (want, want_anchor) = _placed_both_ways(events, triggers, start + 10**9,
                                                               target, (start, offset))
    assert got_anchor == want_anchor
    assert got[0].tolist() == want[0].tolist() and got[1].tolist() == want[1].tolist()
    moved = (got[0] if events_first else got[1])['t'] - (events if events_first else triggers)['t']
    assert (moved < target).all()  # clipped, not moved by the whole target


def test_the_ros_clock_kernel_declines_what_the_python_does():
    # Integers past int64, differences float64 does not hold exactly, strided or read-only
    # arrays: the kernel changes nothing and says None, and the placement is the Python's.
    rng = np.random.default_rng(5)
    events = _records(rng, 8, 0, 10**6)
    triggers = _records(rng, 2, 0, 10**6, TRIGGER_DTYPE)
    for sensor, target, anchor, snap in ((0, 2**60, (0, 0), 2**62), (2**70, 0, None, 10**9),
                                         (0, 5, (2**70, 0), 10**9),
                                         (0, 2**62, (0, -2**62), 10**9),
                                         (-2**63, 0, (0, 0), 10**9)):
        copy = events.copy(), triggers.copy()
        assert kernels.to_ros(*copy, sensor, target, anchor, SLEW, snap) is None
        assert copy[0].tolist() == events.tolist() and copy[1].tolist() == triggers.tolist()
    for sensor, target, anchor in ((0, 2**60, (0, 0)), (0, 5, (2**70, 0))):
        (got, got_anchor), (want, want_anchor) = _placed_both_ways(events, triggers, sensor,
                                                                   target, anchor)
        assert got_anchor == want_anchor and got[0].tolist() == want[0].tolist()
    frozen = triggers.copy()
    frozen.flags.writeable = False
    assert kernels.to_ros(events.copy(), frozen, 0, 5, None, SLEW, 10**9) is None
    assert kernels.to_ros(events.copy()[::2], triggers.copy(), 0, 5, None, SLEW, 10**9) is None
    with pytest.raises(TypeError, match='anchor'):
        kernels.to_ros(events.copy(), triggers.copy(), 0, 5, (1, 2, 3), SLEW, 10**9)
