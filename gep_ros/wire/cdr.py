"""CDR primitives: a bounds-checked reader and a writer for ROS 2 serialized messages.

Every ROS 2 message on the wire (rclpy raw subscriptions, rosbag2 storage) starts with a
4-byte encapsulation header (`00 01 00 00` for little-endian CDR), and alignment of every
primitive is relative to the byte after that header. The reader never allocates from a
length field before checking that the bytes are there, so a lying length costs an
exception, not memory.
"""

import struct

import numpy as np

ENCAPSULATION_LE = b'\x00\x01\x00\x00'
_ALIGN_BASE = 4
_SCALARS = {
    'bool': ('?', 1), 'u8': ('B', 1), 'i8': ('b', 1),
    'u16': ('H', 2), 'i16': ('h', 2),
    'u32': ('I', 4), 'i32': ('i', 4), 'f32': ('f', 4),
    'u64': ('Q', 8), 'i64': ('q', 8), 'f64': ('d', 8),
}


def subfield(prefix, name):
    """Dotted field path for error messages: `header` + `stamp` is `header.stamp`."""
    return f'{prefix}.{name}' if prefix else name


class WireError(ValueError):
    """Bytes that do not decode (or values that do not encode) as the named message type."""

    def __init__(self, msgtype, field, offset, problem):
        self.msgtype = msgtype
        self.field = field
        self.offset = offset
        self.problem = problem
        where = f' at byte {offset}' if offset is not None else ''
        super().__init__(f'{msgtype}: field {field!r}{where}: {problem}')


class CdrReader:
    """Sequential reader over one serialized message, encapsulation header included."""

    __slots__ = ('buf', 'pos', 'msgtype', 'little', '_prefix')

    def __init__(self, data, msgtype):
        try:
            buf = memoryview(data).cast('B')
        except TypeError as exc:
            raise WireError(msgtype, '<message>', 0, f'not a bytes-like object ({exc})') from None
        self.buf = buf
        self.msgtype = msgtype
        if len(buf) < 4:
            raise WireError(msgtype, '<encapsulation>', 0,
                            f'{len(buf)} bytes, shorter than the 4-byte CDR header')
        if buf[0] != 0 or buf[1] not in (0, 1):
            raise WireError(msgtype, '<encapsulation>', 0,
                            f'header {bytes(buf[:4]).hex()} is not plain CDR (00 00 or 00 01)')
        self.little = buf[1] == 1
        self._prefix = '<' if self.little else '>'
        self.pos = 4

    @property
    def remaining(self):
        return len(self.buf) - self.pos

    def align(self, size):
        rel = self.pos - _ALIGN_BASE
        self.pos += -rel % size

    def need(self, nbytes, field):
        if nbytes > len(self.buf) - self.pos:
            raise WireError(self.msgtype, field, self.pos,
                            f'needs {nbytes} bytes, {max(len(self.buf) - self.pos, 0)} left')

    def scalar(self, kind, field):
        code, size = _SCALARS[kind]
        self.align(size)
        self.need(size, field)
        (value,) = struct.unpack_from(self._prefix + code, self.buf, self.pos)
        self.pos += size
        return value

    def u8(self, field):
        return self.scalar('u8', field)

    def boolean(self, field):
        value = self.scalar('u8', field)
        return value != 0

    def u32(self, field):
        return self.scalar('u32', field)

    def i32(self, field):
        return self.scalar('i32', field)

    def u64(self, field):
        return self.scalar('u64', field)

    def f64(self, field):
        return self.scalar('f64', field)

    def length(self, field, item_size):
        """Read a sequence length and check that `length * item_size` bytes follow."""
        n = self.u32(field)
        # Alignment of the first element may add up to 7 bytes; the caller re-checks exactly.
        if n * item_size > len(self.buf) - self.pos:
            raise WireError(self.msgtype, field, self.pos - 4,
                            f'sequence length {n} exceeds the {self.remaining} bytes left')
        return n

    def string(self, field):
        n = self.length(field, 1)
        if n == 0:
            raise WireError(self.msgtype, field, self.pos - 4,
                            'string length 0 (CDR strings carry a terminating NUL)')
        raw = bytes(self.buf[self.pos:self.pos + n])
        if raw[-1] != 0:
            raise WireError(self.msgtype, field, self.pos, 'string lacks its terminating NUL')
        self.pos += n
        try:
            return raw[:-1].decode('utf-8')
        except UnicodeDecodeError as exc:
            raise WireError(self.msgtype, field, self.pos - n,
                            f'not UTF-8 ({exc.reason})') from None

    def array(self, field, dtype, count):
        """Zero-copy view of `count` elements of a primitive dtype at the current position."""
        dtype = np.dtype(dtype)
        if dtype.itemsize > 1:
            self.align(dtype.itemsize)
            dtype = dtype.newbyteorder('<' if self.little else '>')
        nbytes = count * dtype.itemsize
        self.need(nbytes, field)
        out = np.frombuffer(self.buf, dtype=dtype, count=count, offset=self.pos)
        self.pos += nbytes
        return out

    def sequence(self, field, dtype):
        """Read a length-prefixed sequence of a primitive dtype as a zero-copy view."""
        dtype = np.dtype(dtype)
        n = self.length(field, dtype.itemsize)
        return self.array(field, dtype, n)

    def time(self, field):
        """builtin_interfaces/Time as integer nanoseconds."""
        sec = self.i32(subfield(field, 'sec'))
        nanosec = self.u32(subfield(field, 'nanosec'))
        return sec * 1_000_000_000 + nanosec

    def done(self):
        """Check that nothing but alignment padding follows the last field."""
        if len(self.buf) - self.pos > 3:
            raise WireError(self.msgtype, '<end>', self.pos,
                            f'{len(self.buf) - self.pos} unexpected bytes after the last field')


class CdrWriter:
    """Little-endian CDR writer; `getvalue()` returns the message with its 4-byte header."""

    __slots__ = ('buf', 'msgtype')

    def __init__(self, msgtype):
        self.buf = bytearray(ENCAPSULATION_LE)
        self.msgtype = msgtype

    def align(self, size):
        rel = len(self.buf) - _ALIGN_BASE
        self.buf += bytes(-rel % size)

    def scalar(self, kind, value, field):
        code, size = _SCALARS[kind]
        self.align(size)
        try:
            self.buf += struct.pack('<' + code, value)
        except struct.error as exc:
            raise WireError(self.msgtype, field, None, f'{value!r} does not fit ({exc})') from None

    def u8(self, value, field):
        self.scalar('u8', value, field)

    def boolean(self, value, field):
        self.scalar('u8', 1 if value else 0, field)

    def u32(self, value, field):
        self.scalar('u32', value, field)

    def i32(self, value, field):
        self.scalar('i32', value, field)

    def u64(self, value, field):
        self.scalar('u64', value, field)

    def f64(self, value, field):
        self.scalar('f64', value, field)

    def string(self, value, field):
        raw = value.encode('utf-8')
        if b'\x00' in raw:
            raise WireError(self.msgtype, field, None, 'string contains a NUL character')
        self.u32(len(raw) + 1, field)
        self.buf += raw + b'\x00'

    def time(self, stamp_ns, field):
        sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
        self.i32(sec, subfield(field, 'sec'))
        self.u32(nanosec, subfield(field, 'nanosec'))

    def sequence(self, array, dtype, field):
        """Write a length-prefixed sequence of a primitive dtype."""
        data = np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder('<'))
        self.u32(data.size, field)
        self.raw(data, data.dtype.itemsize)

    def raw(self, data, alignment=1):
        """Append contiguous bytes (a numpy array or bytes) after aligning."""
        if alignment > 1:
            self.align(alignment)
        self.buf += memoryview(data).cast('B')

    def getvalue(self):
        return bytes(self.buf)
