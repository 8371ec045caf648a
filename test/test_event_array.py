"""dvs_msgs/EventArray and std_msgs/Header codecs: byte-exact against rosbags, and robust."""

from hypothesis import given, settings, strategies as st
import numpy as np
import pytest

from gep_ros.wire.cdr import WireError
from gep_ros.wire.dvs import (decode_event_array, decode_events_numpy, encode_event_array,
                              EVENT_ARRAY, read_event_array)
from gep_ros.wire.events import EVENT_DTYPE, make_events
from gep_ros.wire.kernels import kernels
from gep_ros.wire.std import decode_header, decode_time, encode_header, encode_time, Header


def random_events(rng, n):
    t = rng.integers(-2**31 * 10**9, (2**31 - 1) * 10**9, n, dtype=np.int64)
    return make_events(rng.integers(0, 2**16, n), rng.integers(0, 2**16, n), np.sort(t),
                       rng.integers(0, 2, n))


def rosbags_message(store, header, height, width, events):
    types = store.types
    time_cls = types['builtin_interfaces/msg/Time']
    sec, nsec = np.divmod(events['t'], 10**9)
    evs = [types['dvs_msgs/msg/Event'](int(x), int(y), time_cls(int(s), int(ns)), bool(p))
           for x, y, s, ns, p in zip(events['x'], events['y'], sec, nsec, events['p'])]
    stamp = time_cls(*map(int, divmod(header.stamp_ns, 10**9)))
    return types[EVENT_ARRAY](types['std_msgs/msg/Header'](stamp, header.frame_id),
                              height, width, evs)


@pytest.mark.parametrize('n', [0, 1, 2, 3, 17, 1000])
@pytest.mark.parametrize('frame_id', ['', 'a', 'ab', 'abc', 'dvs_camera', 'kamera_ü'])
def test_encode_is_byte_identical_to_rosbags(typestore, n, frame_id):
    rng = np.random.default_rng(n + len(frame_id))
    events = random_events(rng, n)
    header = Header(int(rng.integers(0, 2**31 * 10**9)), frame_id)
    ours = encode_event_array(header, 260, 346, events)
    ref = bytes(typestore.serialize_cdr(
        rosbags_message(typestore, header, 260, 346, events), EVENT_ARRAY))
    assert ours == ref
    msg = decode_event_array(ref)
    assert msg.header == header and (msg.height, msg.width) == (260, 346)
    assert msg.events.dtype == EVENT_DTYPE
    np.testing.assert_array_equal(msg.events, events)


def test_one_million_events_round_trip_against_rosbags(typestore):
    rng = np.random.default_rng(7)
    events = random_events(rng, 1_000_000)
    data = encode_event_array(Header(5, 'cam'), 480, 640, events)
    ref = typestore.deserialize_cdr(data, EVENT_ARRAY)
    assert len(ref.events) == len(events)
    # Spot-check rosbags' objects (building arrays from a million objects is the slow part).
    for i in rng.integers(0, len(events), 2000):
        e = ref.events[i]
        assert (e.x, e.y, bool(e.polarity)) == (events['x'][i], events['y'][i], events['p'][i])
        assert e.ts.sec * 10**9 + e.ts.nanosec == events['t'][i]
    np.testing.assert_array_equal(decode_event_array(data).events, events)


def test_polarity_bytes_other_than_one_decode_as_on(typestore):
    events = make_events([1, 2], [3, 4], [10, 20], [1, 1])
    data = bytearray(encode_event_array(Header(0, ''), 1, 1, events))
    data[-1] = 7  # last event's polarity byte
    assert decode_event_array(bytes(data)).events['p'].tolist() == [1, 1]
    assert typestore.deserialize_cdr(bytes(data), EVENT_ARRAY).events[1].polarity


def test_header_and_time_match_rosbags(typestore):
    types = typestore.types
    for stamp, frame in [(0, ''), (1_675_956_550_318_678_998, '0293'), (-1, 'neg')]:
        sec, nsec = divmod(stamp, 10**9)
        msg = types['std_msgs/msg/Header'](types['builtin_interfaces/msg/Time'](sec, nsec), frame)
        ref = bytes(typestore.serialize_cdr(msg, 'std_msgs/msg/Header'))
        assert encode_header(Header(stamp, frame)) == ref
        assert decode_header(ref) == Header(stamp, frame)
        tref = bytes(typestore.serialize_cdr(msg.stamp, 'builtin_interfaces/msg/Time'))
        assert encode_time(stamp) == tref and decode_time(tref) == stamp


def test_errors_name_type_field_and_offset():
    good = encode_event_array(Header(1, 'cam'), 2, 3, make_events([1], [1], [5], [1]))
    with pytest.raises(WireError, match=r'dvs_msgs/msg/EventArray: field .events. at byte'):
        decode_event_array(good[:-1])
    lying = bytearray(good)
    count_at = len(good) - 13 - 4
    lying[count_at:count_at + 4] = (9_000_000).to_bytes(4, 'little')
    with pytest.raises(WireError, match=r'sequence length 9000000 exceeds'):
        decode_event_array(bytes(lying))
    with pytest.raises(WireError, match='header.frame_id'):
        decode_event_array(good[:14])
    with pytest.raises(WireError, match='encapsulation'):
        decode_event_array(b'\x01\x02\x03\x04' + good[4:])
    with pytest.raises(WireError, match='unexpected bytes after the last field'):
        decode_event_array(good + b'\x00' * 8)
    with pytest.raises(WireError, match='int32 seconds range'):
        encode_event_array(Header(0, ''), 1, 1, make_events([0], [0], [2**31 * 10**9], [0]))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_decode_or_raise_wire_error(data):
    try:
        decode_event_array(b'\x00\x01\x00\x00' + data)
    except WireError:
        pass


VALID = encode_event_array(Header(123, 'frame'), 260, 346,
                           make_events(range(20), range(20), range(0, 200, 10), [0, 1] * 10))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), max_size=6),
       st.integers(0, len(VALID)))
def test_mutated_messages_decode_or_raise_wire_error(flips, cut):
    data = bytearray(VALID)
    for pos, value in flips:
        data[pos] = value
    # The one-call path and the field reader must agree on every message: the same
    # fields, or the same WireError (the one-call path hands whatever it does not take on).
    outcomes = []
    for decode in (decode_event_array, read_event_array):
        try:
            outcomes.append(decode(bytes(data[:cut])))
        except WireError as exc:
            outcomes.append(str(exc))
    fast, fields = outcomes
    if isinstance(fields, str):
        assert fast == fields
        return
    assert (fast.header, fast.height, fast.width) == (fields.header, fields.height,
                                                      fields.width)
    assert fast.events.tobytes() == fields.events.tobytes()
    assert len(fast.events) <= 20  # a lying length can never yield more events than bytes


def test_time_range_of_event_records():
    events = make_events([1, 2, 3], [0, 0, 0], [5, -7, 3], [0, 1, 0])
    assert kernels.time_range(events) == (-7, 5)
    assert kernels.time_range(events[2:]) == (3, 3)
    with pytest.raises(ValueError, match='non-empty'):
        kernels.time_range(events[:0])


def test_allocator_keeps_freed_memory_for_large_messages():
    from gep_ros.memory import retain_freed_memory
    assert retain_freed_memory() is True  # glibc: what `gep` and the node do at start
    assert retain_freed_memory() is True  # idempotent


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 300), seed=st.integers(0, 2**32 - 1), start=st.sampled_from([0, 4, 8]))
def test_kernel_copy_matches_the_numpy_strided_copy(n, seed, start):
    # Any bytes at all in the records: seconds of either sign, nanoseconds past 1e9,
    # polarity bytes other than 0 and 1. The compiled copy must equal numpy's to the bit.
    rng = np.random.default_rng(seed)
    buf = rng.integers(0, 256, start + max(16 * n - 3, 0), dtype=np.uint8).tobytes()
    ours = np.empty(n, EVENT_DTYPE)
    kernels.event_array_decode(buf, start, n, ours)
    want = decode_events_numpy(memoryview(buf), start, n)
    for name in EVENT_DTYPE.names:
        assert np.array_equal(ours[name], want[name]), name
    assert not ours.view(np.uint8).reshape(n, 16)[:, 13:].any()  # padding zeroed


def test_kernel_copy_refuses_short_buffers():
    with pytest.raises(ValueError, match='too small'):
        kernels.event_array_decode(bytes(28), 0, 2, np.empty(2, EVENT_DTYPE))
    with pytest.raises(ValueError, match='too small'):
        kernels.event_array_decode(bytes(29), 0, 2, np.empty(1, EVENT_DTYPE))
