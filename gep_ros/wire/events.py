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


def concat_events(chunks):
    """Concatenate event arrays into a new array (an empty list gives an empty one).

    np.concatenate copies structured arrays field by field and leaves the padding bytes
    uninitialised; concatenating into zeroed memory keeps results byte-for-byte reproducible.
    """
    if not chunks:
        return empty_events()
    return np.concatenate(chunks, out=empty_events(sum(len(c) for c in chunks)))


def make_events(x, y, t, p):
    """Build an event array from four equally long sequences (copied and cast)."""
    x = np.asarray(x)
    out = np.empty(x.shape[0], EVENT_DTYPE)
    out['x'] = x
    out['y'] = y
    out['t'] = t
    out['p'] = p
    return out
