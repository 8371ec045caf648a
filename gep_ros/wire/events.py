"""The event array every decoder produces: one numpy structured array, one row an event.

Fields are `x` (uint16), `y` (uint16), `t` (int64 nanoseconds) and `p` (uint8, 1 = ON, 0 = OFF).
The layout puts `t` first so that every field is aligned (16 bytes an event); code accesses
fields by name, never by position.
"""

import numpy as np

EVENT_DTYPE = np.dtype([('t', '<i8'), ('x', '<u2'), ('y', '<u2'), ('p', 'u1')], align=True)

# External trigger edges (EVT3 EXT_TRIGGER, event_camera_msgs `trigger` packets): time in
# nanoseconds, edge polarity (1 = rising) and the trigger channel id.
TRIGGER_DTYPE = np.dtype([('t', '<i8'), ('p', 'u1'), ('id', 'u1')], align=True)


def empty_events(n=0):
    """Return n events, all fields and padding bytes zero."""
    return np.zeros(n, EVENT_DTYPE)


# Records as raw bytes, and the bytes of x, y and p in the second half of a record (as a
# little-endian uint64): the other three are padding.
_RECORD = np.dtype('V16')
_FIELDS_MASK = np.uint64(0x0000_00FF_FFFF_FFFF)


def concat_events(chunks):
    """Concatenate event arrays into a new array (an empty list gives an empty one).

    Event arrays are copied as raw 16-byte records, then their padding bytes are zeroed, so
    that results are byte-for-byte reproducible whatever padding the chunks had (numpy's
    structured concatenation copies field by field, several times slower). Other arrays
    are concatenated by numpy into zeroed memory.
    """
    if not chunks:
        return empty_events()
    total = sum(len(c) for c in chunks)
    if any(c.dtype != EVENT_DTYPE for c in chunks):
        return np.concatenate(chunks, out=empty_events(total))
    out = np.empty(total, EVENT_DTYPE)
    np.concatenate([np.ascontiguousarray(c).view(_RECORD) for c in chunks],
                   out=out.view(_RECORD))
    _zero_padding(out)
    return out


def copy_events(dst, src):
    """Copy event array src into dst (contiguous, as long) as concat_events joins arrays."""
    if src.dtype != EVENT_DTYPE:  # field by field, by name
        dst.view(np.uint8)[...] = 0
        for name in EVENT_DTYPE.names:
            dst[name] = src[name]
        return
    dst.view(_RECORD)[...] = np.ascontiguousarray(src).view(_RECORD)
    _zero_padding(dst)


def _zero_padding(records):
    """Zero the padding bytes of a contiguous EVENT_DTYPE array, in place."""
    records.view('<u8')[1::2] &= _FIELDS_MASK


def make_events(x, y, t, p):
    """Build an event array from four equally long sequences (copied and cast)."""
    x = np.asarray(x)
    out = np.empty(x.shape[0], EVENT_DTYPE)
    out['x'] = x
    out['y'] = y
    out['t'] = t
    out['p'] = p
    return out
