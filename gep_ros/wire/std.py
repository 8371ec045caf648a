"""std_msgs/Header and builtin_interfaces/Time on the wire."""

from dataclasses import dataclass

from .cdr import CdrReader, CdrWriter, subfield

TIME = 'builtin_interfaces/msg/Time'
HEADER = 'std_msgs/msg/Header'


@dataclass(frozen=True, slots=True)
class Header:
    """A ROS 2 header: stamp in integer nanoseconds since the epoch, and the frame id."""

    stamp_ns: int = 0
    frame_id: str = ''


def read_header(reader: CdrReader, field='header'):
    stamp = reader.time(subfield(field, 'stamp'))
    frame_id = reader.string(subfield(field, 'frame_id'))
    return Header(stamp, frame_id)


def write_header(writer: CdrWriter, header: Header, field='header'):
    writer.time(header.stamp_ns, subfield(field, 'stamp'))
    writer.string(header.frame_id, subfield(field, 'frame_id'))


def decode_time(data):
    """Decode a serialized builtin_interfaces/msg/Time into nanoseconds."""
    reader = CdrReader(data, TIME)
    stamp = reader.time('')
    reader.done()
    return stamp


def encode_time(stamp_ns):
    writer = CdrWriter(TIME)
    writer.time(stamp_ns, '')
    return writer.getvalue()


def decode_header(data):
    """Decode a serialized std_msgs/msg/Header."""
    reader = CdrReader(data, HEADER)
    header = read_header(reader, '')
    reader.done()
    return header


def encode_header(header: Header):
    writer = CdrWriter(HEADER)
    write_header(writer, header, '')
    return writer.getvalue()
