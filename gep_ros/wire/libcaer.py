"""iniVation (libcaer) event encodings of event_camera_msgs packets, decoded with numpy.

`libcaer`: one 8-byte record per event, libcaer's polarity event: a little-endian uint32 of
flags (bit 1 polarity, bits 2-16 y, bits 17-31 x) and an int32 microsecond timestamp that
wraps at 2^31. The message's `time_base` (ns) is the sensor time of the driver's start plus
the high bits; a wrap inside a packet adds 2^31 us. As in event_camera_codecs, records carry
no validity check and no geometry check, and arithmetic is uint64 (a negative timestamp
wraps, it is not an error).

`libcaer_cmp`: libcaer's compressed words, 16 bits each like EVT3 with x and y swapped:
ADDR_X holds a column, ADDR_Y emits one event in that column, VECT_BASE_Y / VECT_8 emit up
to 8 events at consecutive rows. Column, vector base and polarity carry across packets;
the clock restarts at `time_base` in every packet (TIME_HIGH / TIME_LOW count microseconds
from it and never wrap). The words are renamed to their EVT3 counterparts and decoded by the
EVT3 decoder with x and y exchanged. Times follow event_camera_py (sensor time since the
epoch in us, here times 1000): `time_base // 1000 + (high << 12 | low)` us. The reference
C++ decoder's nanosecond mode adds a ns time base to us and multiplies the sum by 1000,
which overflows, so its raw checksums are not a convention worth copying.
"""

import numpy as np

from . import evt3
from .events import EVENT_DTYPE

_ROLLOVER_NS = (1 << 31) * 1000
_MASK64 = (1 << 64) - 1

# libcaer_cmp word types and the EVT3 type that does the same job with x and y exchanged.
CMP_TIME_HIGH, CMP_TIME_LOW, CMP_ADDR_X, CMP_ADDR_Y, CMP_VECT_BASE_Y, CMP_VECT_8 = range(6)
_CMP_TO_EVT3 = np.full(16, evt3.OTHERS, np.uint16)  # unknown types are ignored, as upstream
_CMP_TO_EVT3[[CMP_TIME_HIGH, CMP_TIME_LOW, CMP_ADDR_X, CMP_ADDR_Y, CMP_VECT_BASE_Y,
              CMP_VECT_8]] = [evt3.TIME_HIGH, evt3.TIME_LOW, evt3.ADDR_Y, evt3.ADDR_X,
                              evt3.VECT_BASE_X, evt3.VECT_8]


def first_cut(t_ns, until_ns):
    """Find the first time (int64 ns, compared as uint64) >= until_ns; len(t_ns) if none."""
    if until_ns is None or until_ns > _MASK64:
        return t_ns.size
    hits = np.flatnonzero(t_ns.view(np.uint64) >= np.uint64(until_ns))
    return int(hits[0]) if hits.size else t_ns.size


def decode_libcaer(records, time_base, until_ns=None):
    """Decode libcaer polarity records ((N,) '<u8') -> (events, records consumed, times).

    Decoding stops before the first event whose time reaches `until_ns`; `times` ((N,) int64
    ns) covers every record, also those after the stop.
    """
    rec = records.view('<u4').reshape(-1, 2)
    flags = rec[:, 0]
    ts = rec[:, 1].view('<i4').astype(np.int64).view(np.uint64)  # sign-extended, as upstream
    # A timestamp below its predecessor wrapped; the first compares against 0, so only
    # wraps inside the packet count (the driver folds earlier ones into time_base).
    previous = np.empty_like(ts)
    previous[:1] = 0
    previous[1:] = ts[:-1]
    wraps = np.cumsum(ts < previous, dtype=np.uint64)
    t = np.uint64(time_base & _MASK64) + wraps * np.uint64(_ROLLOVER_NS) + ts * np.uint64(1000)
    t = t.view(np.int64)
    stop = first_cut(t, until_ns)
    out = np.empty(stop, EVENT_DTYPE)
    flags = flags[:stop]
    out['t'] = t[:stop]
    out['x'] = (flags >> 17) & 0x7FFF
    out['y'] = (flags >> 2) & 0x7FFF
    out['p'] = (flags >> 1) & 1
    return out, stop, t


def cmp_time_offset_us(time_base):
    """Microseconds since the epoch at which a libcaer_cmp packet's clock starts."""
    return (time_base & _MASK64) // 1000


def decode_libcaer_cmp(words, state, width, height, time_base, until_ns=None, *,
                       msgtype='libcaer_cmp', offset=0):
    """Decode libcaer_cmp words ((W,) uint16) given the stream's state; see `evt3.decode_words`.

    `state` is an `evt3.Evt3State` in EVT3 terms (`y` is the held column, `base_x` the vector
    base row); its clock is ignored because every packet restarts it.
    """
    base_us = cmp_time_offset_us(time_base)
    renamed = (_CMP_TO_EVT3[words >> 12] << 12) | (words & 0xFFF)
    fresh_clock = evt3.Evt3State(state.y, 0, 0, state.polarity, state.base_x, True)
    out = evt3.decode_words(renamed, fresh_clock, height, width, until_ns, rollover=False,
                            time_offset_us=base_us, msgtype=msgtype, offset=offset)
    events = out.events
    x = events['y'].copy()
    events['y'] = events['x']
    events['x'] = x
    return out
