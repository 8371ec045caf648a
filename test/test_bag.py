"""Bag reading (ROS 1 and ROS 2, sqlite3 and mcap) and writing, through rosbags."""

from pathlib import Path

import numpy as np
import pytest
from rosbags.highlevel import AnyReader
from rosbags.rosbag1 import Writer as Writer1

from gep_ros.bag import BagError, BagReader, BagWriter
from gep_ros.msgtypes import EVENT_ARRAY, EVENT_PACKET
from gep_ros.wire.dvs import decode_event_array, encode_event_array
from gep_ros.wire.events import make_events
from gep_ros.wire.std import Header

# Message counts and topics from the recordings' documentation (test/data/README.md).
REAL = {
    'evpy_test_events_1': 517,
    'evpy_test_events_1.bag': 517,
    'codecs_test_data_evt3_trigger': 105,
    'codecs_test_data_libcaer_rollover': 201,
    'evpy_test_events_2': 100,  # metadata.yaml with an empty storage identifier
}
TOPIC = '/event_camera/events'


@pytest.mark.parametrize('name', REAL)
def test_real_bags_read_in_receive_time_order(bags_dir, name):
    with BagReader(bags_dir / name) as bag:
        assert bag.topics[TOPIC].msgtype == EVENT_PACKET
        assert bag.topics[TOPIC].count == REAL[name]
        assert bag.event_topics() == [TOPIC]
        msgs = list(bag.messages())
    assert len(msgs) == REAL[name]
    times = [m.time_ns for m in msgs]
    assert times == sorted(times)
    assert all(m.data[:4] == b'\x00\x01\x00\x00' and not m.error for m in msgs)


def test_ros1_bag_converts_to_the_same_cdr_as_the_ros2_recording(bags_dir):
    with BagReader(bags_dir / 'evpy_test_events_1.bag') as ros1:
        assert ros1.is_ros1
        a = [(m.time_ns, m.data) for m in ros1.messages()]
    with BagReader(bags_dir / 'evpy_test_events_1') as ros2:
        b = [(m.time_ns, m.data) for m in ros2.messages()]
    assert a == b


def test_storage_file_opens_directly(bags_dir):
    with BagReader(bags_dir / 'evpy_test_events_2' / 'test_events_2_0.mcap') as bag:
        assert bag.message_count == 100
        assert bag.duration_ns > 0.9e9


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_written_bag_reads_back_and_opens_in_rosbags(tmp_path, storage):
    events = make_events([1, 2, 3], [4, 5, 6], [10, 20, 30], [1, 0, 1])
    payloads = [encode_event_array(Header(i, 'cam'), 260, 346, events) for i in range(5)]
    out = tmp_path / 'out'
    with BagWriter(out, storage) as bag:
        for i, data in enumerate(payloads):
            bag.write('/dvs/events', 1000 + i, data, msgtype=EVENT_ARRAY)
    with BagReader(out) as bag:
        got = list(bag.messages())
    assert [m.data for m in got] == payloads
    assert [m.time_ns for m in got] == [1000, 1001, 1002, 1003, 1004]
    # The definitions are embedded: a reader that knows nothing of dvs_msgs decodes it.
    with AnyReader([out]) as reader:
        conn, _, raw = next(reader.messages())
        msg = reader.deserialize(raw, conn.msgtype)
    assert [e.x for e in msg.events] == [1, 2, 3]


def test_corrupt_ros1_message_is_kept_with_its_reason(tmp_path, typestore):
    events = make_events([1], [2], [3], [1])
    good = bytes(typestore.cdr_to_ros1(encode_event_array(Header(1, 'c'), 1, 1, events),
                                       EVENT_ARRAY))
    path = tmp_path / 'corrupt.bag'
    with Writer1(path) as writer:
        conn = writer.add_connection('/dvs/events', EVENT_ARRAY, typestore=typestore)
        writer.write(conn, 1, good)
        writer.write(conn, 2, good[:-5])
        writer.write(conn, 3, good)
    with BagReader(path) as bag:
        msgs = list(bag.messages())
    assert [bool(m.error) for m in msgs] == [False, True, False]
    assert decode_event_array(msgs[2].data).events['x'].tolist() == [1]


def test_errors_name_the_bag(tmp_path, bags_dir):
    with pytest.raises(BagError, match='no such file'):
        BagReader(tmp_path / 'missing.mcap')
    text = tmp_path / 'notes.txt'
    text.write_text('hello')
    with pytest.raises(BagError, match='not a bag'):
        BagReader(text)
    fake = tmp_path / 'fake.mcap'
    fake.write_bytes(b'not an mcap file at all')
    with pytest.raises(BagError, match=r'fake.mcap: cannot open bag'):
        with BagReader(fake):
            pass
    with BagReader(bags_dir / 'evpy_test_events_1') as bag:
        with pytest.raises(BagError, match='no topic /nope'):
            list(bag.messages(['/nope']))
    with pytest.raises(BagError, match='already exists'):
        BagWriter(Path(bags_dir / 'evpy_test_events_1'))


def test_empty_folder_is_refused(tmp_path):
    with pytest.raises(BagError, match='no metadata.yaml'):
        BagReader(tmp_path)


def test_event_payload_survives_write_read(tmp_path):
    rng = np.random.default_rng(1)
    events = make_events(rng.integers(0, 346, 5000), rng.integers(0, 260, 5000),
                         np.sort(rng.integers(0, 10**9, 5000)), rng.integers(0, 2, 5000))
    out = tmp_path / 'b'
    with BagWriter(out) as bag:
        bag.write('/e', 1, encode_event_array(Header(0, 'x'), 260, 346, events), EVENT_ARRAY)
    with BagReader(out) as bag:
        (msg,) = bag.messages()
    np.testing.assert_array_equal(decode_event_array(msg.data).events, events)
