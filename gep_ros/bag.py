"""Bag reading and writing through rosbags, as the raw CDR bytes a live subscription delivers.

Reads ROS 1 `.bag` files and ROS 2 bags (a folder with metadata.yaml, or a single `.db3` /
`.mcap` file) and yields `BagMessage(topic, msgtype, time_ns, data)` in receive-time order,
where `data` is ROS 2 CDR with its encapsulation header: ROS 1 messages are converted on the
byte level (rosbags' `ros1_to_cdr`, which also drops the ROS 1 header's `seq`). Writes ROS 2
bags (mcap by default, sqlite3 on request) with message definitions embedded, so Foxglove and
`ros2 bag` open them without the message packages installed.
"""

from dataclasses import dataclass
import heapq
from pathlib import Path

from rosbags.interfaces import MessageDefinitionFormat
from rosbags.rosbag1 import Reader as Reader1, ReaderError as Reader1Error
from rosbags.rosbag2 import Reader as Reader2, ReaderError as Reader2Error
from rosbags.rosbag2 import StoragePlugin, Writer as Writer2, WriterError
from rosbags.serde import SerdeError
from rosbags.typesys import get_types_from_msg, get_typestore, Stores, TypesysError
import yaml

from .msgtypes import EVENT_TYPES, register_event_types, typestore

# What rosbags raises on unreadable files, plus what a damaged file provokes underneath it.
_ERRORS = (Reader1Error, Reader2Error, WriterError, SerdeError, TypesysError, OSError,
           ValueError, KeyError, TypeError, AssertionError, EOFError)
_STORAGE_SUFFIXES = ('.mcap', '.db3')


class BagError(Exception):
    """A bag that cannot be opened, read or written; the message names the bag and the cause."""


@dataclass(frozen=True)
class BagMessage:
    topic: str
    msgtype: str
    time_ns: int  # receive (record) time
    data: bytes  # ROS 2 CDR, encapsulation header included
    error: str = ''  # why `data` is empty: the message could not be converted to CDR


@dataclass(frozen=True)
class TopicInfo:
    msgtype: str
    count: int


def _open_readers(path):
    """Return the rosbags readers behind `path` and whether they are ROS 1."""
    if path.is_file() and path.suffix == '.bag':
        return [Reader1(path)], True
    if path.is_file() and path.suffix in _STORAGE_SUFFIXES:
        return [Reader2(path)], False
    if path.is_dir():
        if (path / 'metadata.yaml').is_file() and _storage_identifier_known(path):
            return [Reader2(path)], False
        # A metadata.yaml with an empty (or no) storage identifier, as some recorders
        # write it: read the storage files themselves, which rosbags opens by suffix.
        files = sorted(p for p in path.iterdir() if p.suffix in _STORAGE_SUFFIXES)
        if files:
            return [Reader2(p) for p in files], False
        raise BagError(f'{path}: no metadata.yaml and no .mcap or .db3 file in the folder')
    if not path.exists():
        raise BagError(f'{path}: no such file or folder')
    raise BagError(f'{path}: not a bag (expected a .bag, .db3 or .mcap file, or a bag folder)')


def _storage_identifier_known(folder):
    try:
        meta = yaml.safe_load((folder / 'metadata.yaml').read_text())
        ident = meta['rosbag2_bagfile_information'].get('storage_identifier')
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return True  # let rosbags report what is wrong with it
    return ident in Reader2.STORAGE_PLUGINS


class BagReader:
    """Open a ROS 1 or ROS 2 bag and read its messages as ROS 2 CDR bytes.

    Use as a context manager. `topics` maps topic names to their type and message count.
    """

    def __init__(self, path):
        self.path = Path(path)
        self._readers, self.is_ros1 = _open_readers(self.path)
        self._store = typestore()
        self._ros1_types_added = False

    def __enter__(self):
        opened = []
        try:
            for reader in self._readers:
                reader.open()
                opened.append(reader)
        except _ERRORS as exc:
            for reader in opened:
                reader.close()
            raise BagError(f'{self.path}: cannot open bag: {exc}') from None
        if self.is_ros1:
            self._add_ros1_definitions()
        return self

    def __exit__(self, *exc):
        for reader in self._readers:
            reader.close()

    def _connections(self):
        return [c for r in self._readers for c in r.connections]

    def _add_ros1_definitions(self):
        """Register ROS 1 types our store lacks, from the definitions the bag carries."""
        store = self._store
        missing = {}
        for conn in self._connections():
            known = conn.msgtype in store.fielddefs
            if known or conn.msgdef.format != MessageDefinitionFormat.MSG:
                continue
            types = get_types_from_msg(conn.msgdef.data, conn.msgtype)
            missing.update({k: v for k, v in types.items() if k not in store.fielddefs})
        if missing:
            # A private copy: the shared store must not learn one bag's custom types.
            store = register_event_types(get_typestore(Stores.ROS2_HUMBLE))
            missing.pop('std_msgs/msg/Header', None)
            store.register(missing)
            self._store = store

    @property
    def topics(self):
        out = {}
        for conn in self._connections():
            prev = out.get(conn.topic)
            out[conn.topic] = TopicInfo(conn.msgtype, conn.msgcount + (prev.count if prev else 0))
        return dict(sorted(out.items()))

    @property
    def start_ns(self):
        return min(r.start_time for r in self._readers)

    @property
    def end_ns(self):
        return max(r.end_time for r in self._readers)

    @property
    def duration_ns(self):
        """Time from the first to the last message (0 for an empty bag)."""
        count = sum(r.message_count for r in self._readers)
        return max(self.end_ns - 1 - self.start_ns, 0) if count else 0

    @property
    def message_count(self):
        return sum(r.message_count for r in self._readers)

    def event_topics(self):
        """Topics carrying dvs_msgs/EventArray or event_camera_msgs/EventPacket."""
        return [t for t, info in self.topics.items() if info.msgtype in EVENT_TYPES]

    def messages(self, topics=None):
        """Yield BagMessage in receive-time order, optionally only for the given topics."""
        wanted = set(topics) if topics is not None else None
        unknown = wanted - set(self.topics) if wanted else set()
        if unknown:
            raise BagError(f'{self.path}: no topic {", ".join(sorted(unknown))} in the bag '
                           f'(topics: {", ".join(self.topics) or "none"})')
        streams = []
        for reader in self._readers:
            conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
            if conns:
                streams.append(reader.messages(connections=conns))
        try:
            for conn, time_ns, raw in heapq.merge(*streams, key=lambda m: m[1]):
                yield self._message(conn, time_ns, raw)
        except _ERRORS as exc:
            raise BagError(f'{self.path}: cannot read messages: {exc}') from None

    def _message(self, conn, time_ns, raw):
        if not self.is_ros1:
            return BagMessage(conn.topic, conn.msgtype, time_ns, bytes(raw))
        try:
            data = bytes(self._store.ros1_to_cdr(raw, conn.msgtype))
        except (SerdeError, TypesysError, KeyError) as exc:
            # A corrupt ROS 1 message stays in the stream, empty and with its reason, so
            # the caller counts it as rejected instead of losing it silently.
            return BagMessage(conn.topic, conn.msgtype, time_ns, b'', f'not convertible: {exc}')
        return BagMessage(conn.topic, conn.msgtype, time_ns, data)


class BagWriter:
    """Write a ROS 2 bag of raw CDR messages: mcap by default, sqlite3 on request."""

    def __init__(self, path, storage='mcap'):
        plugins = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}
        if storage not in plugins:
            raise BagError(f'{path}: unknown storage {storage!r} (use mcap or sqlite3)')
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f'{self.path}: already exists; choose a new output path')
        self._writer = Writer2(self.path, version=9, storage_plugin=plugins[storage])
        self._connections = {}

    def __enter__(self):
        try:
            self._writer.open()
        except _ERRORS as exc:
            raise BagError(f'{self.path}: cannot create bag: {exc}') from None
        return self

    def __exit__(self, *exc):
        self._writer.close()

    def add_topic(self, topic, msgtype):
        if topic not in self._connections:
            self._connections[topic] = self._writer.add_connection(
                topic, msgtype, typestore=typestore())
        return self._connections[topic]

    def write(self, topic, time_ns, data, msgtype=None):
        """Write CDR bytes on `topic` at receive time `time_ns`; `msgtype` on first use."""
        conn = self._connections.get(topic)
        if conn is None:
            if msgtype is None:
                raise BagError(f'{self.path}: topic {topic} has no type; pass msgtype')
            conn = self.add_topic(topic, msgtype)
        self._writer.write(conn, int(time_ns), data)
