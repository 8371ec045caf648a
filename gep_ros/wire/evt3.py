"""Prophesee EVT 3.0 word streams decoded into event arrays with numpy, without a loop per word.

EVT3 is a stream of 16-bit little-endian words whose top nibble is the word type. Most words
only change decoder state (row, vector base x and polarity, the two 12-bit halves of a 24-bit
microsecond clock); ADDR_X emits one event, VECT_12 / VECT_8 emit one event per set bit at
consecutive x. The state carries across packets, so `decode_words` takes the state in effect
before the packet and returns the state after it, never mutating anything: a packet that
fails to decode leaves its stream exactly as it was.

The conventions are those of event_camera_codecs' evt3 decoder, whose checksums the tests
assert: nothing is decoded before the first valid time (a TIME_HIGH then a TIME_LOW within one
packet; words before that only move the clock), a TIME_HIGH more than 10 steps below the
previous one means the 24-bit counter wrapped (2^24 us are added), events at x >= width or
y >= height are dropped (triggers are never dropped), and time in ns is the extended
microsecond time times 1000. A time limit (`until_ns`) stops decoding at the first TIME_LOW
whose time reaches it, which is event_camera_codecs' decodeUntil.

How the loop is avoided: the value of a state variable at a word is the value written by
the last setter word before it, i.e. an index, the running count of setter words (an int32
cumulative sum), into the setters' values with the previous state's value at index 0. The
rollover count is a cumulative sum over TIME_HIGH words, and ADDR_X is treated as a 1-bit
vector so that ADDR_X, VECT_12 and VECT_8 words expand together through one bit matrix,
keeping word and bit order. (Boolean-mask indexing, np.nonzero on 2-D arrays, searchsorted
and maximum.accumulate were each several times slower here than flatnonzero + take.)
"""

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .cdr import WireError
from .events import EVENT_DTYPE, TRIGGER_DTYPE

# Word types (top nibble).
ADDR_Y = 0x0
ADDR_X = 0x2
VECT_BASE_X = 0x3
VECT_12 = 0x4
VECT_8 = 0x5
TIME_LOW = 0x6
CONTINUED_4 = 0x7
TIME_HIGH = 0x8
EXT_TRIGGER = 0xA
OTHERS = 0xE
CONTINUED_12 = 0xF

# How far base x advances after a vector word, by word type.
_ADVANCE = np.zeros(16, np.uint16)
_ADVANCE[VECT_12] = 12
_ADVANCE[VECT_8] = 8

NS_PER_US = 1000
# A TIME_HIGH that falls back by at most this many steps is bit noise, not a wrap.
ROLLOVER_TOLERANCE = 10
_I64_MAX = np.iinfo(np.int64).max
_I64_MIN = np.iinfo(np.int64).min


@dataclass(frozen=True)
class Evt3State:
    """Decoder state between packets of one stream.

    `time_high` holds the TIME_HIGH payload shifted left by 12 plus the rollover count times
    2^24, so `time_high | time_low` is the extended time in microseconds.
    """

    y: int = 0
    time_low: int = 0
    time_high: int = 0
    polarity: int = 0
    base_x: int = 0
    valid: bool = False

    @property
    def time_us(self):
        return self.time_high | self.time_low


@dataclass
class Evt3Result:
    """What one call of `decode_words` produced."""

    events: np.ndarray  # (N,) EVENT_DTYPE, t in sensor ns
    triggers: np.ndarray  # (M,) TRIGGER_DTYPE
    state: Evt3State  # state after the consumed words
    consumed: int  # words consumed; fewer than given only when the time limit was reached
    first_time_ns: Optional[int]  # time in effect at the first decoded word, None if not valid
    next_time_ns: Optional[int]  # time that stopped decoding, None if all words were consumed


def _clamp64(value):
    return min(max(value, _I64_MIN), _I64_MAX)


def _with_first(first, values, dtype=np.int64):
    """Prepend the state's value so that index 0 means 'no setter word seen yet'."""
    out = np.empty(values.size + 1, dtype)
    out[0] = first
    out[1:] = values
    return out


def _pick(values, mask):
    """values[mask]; going through the indices is several times faster for random masks."""
    return values[np.flatnonzero(mask)]


def _empty_result(state, first_ns, next_ns):
    return Evt3Result(np.empty(0, EVENT_DTYPE), np.empty(0, TRIGGER_DTYPE), state, 0,
                      first_ns, next_ns)


def _clock(codes, words, state, rollover):
    """Time after every TIME_LOW / TIME_HIGH word.

    Returns (is_time, tw, is_high, high_after, low_after): the (W,) mask and (K,) indices of
    the time words, which of them are TIME_HIGH, and the high part (rollover included) and
    the low part of the clock after each, (K,) int64.
    """
    is_time = (codes == TIME_LOW) | (codes == TIME_HIGH)
    tw = np.flatnonzero(is_time)
    tword = words[tw]
    value = (tword & 0xFFF).astype(np.int64)
    is_high = tword >= TIME_HIGH << 12
    high = _pick(value, is_high)
    if rollover:
        previous = _with_first((state.time_high >> 12) & 0xFFF, high[:-1])
        wraps = np.cumsum((previous - high) > ROLLOVER_TOLERANCE)
        highs = ((state.time_high >> 24) + wraps) << 24 | (high << 12)
    else:
        highs = high << 12
    high_after = _with_first(state.time_high, highs)[np.cumsum(is_high, dtype=np.int32)]
    lows = _pick(value, ~is_high)
    low_after = _with_first(state.time_low, lows)[np.cumsum(~is_high, dtype=np.int32)]
    return is_time, tw, is_high, high_after, low_after


def _first_valid(is_high):
    """Position in the time words of the TIME_LOW that completes the first valid time."""
    highs = np.flatnonzero(is_high)
    if highs.size == 0:
        return None
    lows = np.flatnonzero(~is_high[highs[0]:])
    return int(highs[0] + lows[0]) if lows.size else None


def _vector_bases(code, payload, state):
    """Find base x and polarity in effect at each of the X-related words (types 2..5).

    Base x is the last VECT_BASE_X value plus the advances of the vector words since; uint16
    sums wrap exactly like the reference's uint16 base. Returns (base_x, polarity, state's
    base_x and polarity after the last word).
    """
    is_base = code == VECT_BASE_X
    advance = _ADVANCE[code]
    before = np.cumsum(advance, dtype=np.uint16) - advance
    last_base = np.cumsum(is_base, dtype=np.int32)  # 0: none yet, k: the k-th base word
    bases = np.flatnonzero(is_base)
    base_x = (_with_first(state.base_x, payload[bases] & 0x7FF, np.uint16)[last_base]
              + before - _with_first(0, before[bases], np.uint16)[last_base])
    polarity = _with_first(state.polarity, payload[bases] >> 11, np.uint8)[last_base]
    return base_x, polarity, int(base_x[-1] + advance[-1]) & 0xFFFF, int(polarity[-1])


def _expand(code, payload, y_at, t_at, state, width, height):
    """CD events of the X-related words; returns (events, base_x and polarity after).

    `code` / `payload` ((M,) uint16) are the words of types 2..5, `y_at` / `t_at` the row and
    time (ns) in effect at each.
    """
    new_base, new_pol = state.base_x, state.polarity
    vectors = code != ADDR_X
    if vectors.any():
        base_x, vect_pol, new_base, new_pol = _vector_bases(code, payload, state)
        # ADDR_X is a 1-bit vector at its own x with its own polarity.
        emit = np.flatnonzero((code != VECT_BASE_X) & (y_at < height))
        code, payload, base_x, vect_pol = code[emit], payload[emit], base_x[emit], vect_pol[emit]
        y_at, t_at = y_at[emit], t_at[emit]
        is_addr = code == ADDR_X
        x0 = np.where(is_addr, payload & 0x7FF, base_x)
        pol = np.where(is_addr, payload >> 11, vect_pol).astype(np.uint8)
        mask = np.where(is_addr, 1, payload & np.where(code == VECT_12, 0xFFF, 0xFF))
        bits = np.unpackbits(mask.astype('<u2').view(np.uint8), bitorder='little')
        hit = np.flatnonzero(bits.view(bool)).astype(np.int32)  # word order, then bit order
        row = hit >> 4
        x = x0[row] + (hit & 15).astype(np.uint16)  # the reference adds in uint16
        y_at, t_at, pol = y_at[row], t_at[row], pol[row]
    else:
        emit = y_at < height
        if not emit.all():
            emit = np.flatnonzero(emit)
            payload, y_at, t_at = payload[emit], y_at[emit], t_at[emit]
        x = payload & 0x7FF
        pol = (payload >> 11).astype(np.uint8)
    keep = x < width
    if not keep.all():
        keep = np.flatnonzero(keep)
        x, y_at, t_at, pol = x[keep], y_at[keep], t_at[keep], pol[keep]
    out = np.empty(x.size, EVENT_DTYPE)
    out['x'] = x
    out['y'] = y_at
    out['t'] = t_at
    out['p'] = pol
    return out, new_base, new_pol


def decode_words(words, state, width, height, until_ns=None, *, rollover=True,
                 time_offset_us=0, msgtype='evt3', offset=0):
    """Decode EVT3 words (a (W,) uint16 little-endian array) given the stream's state.

    `until_ns` stops at the first TIME_LOW whose time (ns) is >= it; that word is not
    consumed, so a later call with a higher limit resumes there. `rollover=False` and
    `time_offset_us` serve libcaer_cmp, which reuses this decoder with a clock that never
    wraps and starts at the message's time base. `msgtype` / `offset` (byte offset of the
    first word in the message) name the place of an unsupported word in the WireError.
    """
    words = np.asarray(words, dtype='<u2')
    n = words.size
    state_ns = (state.time_us + time_offset_us) * NS_PER_US
    if until_ns is not None and state.valid and state_ns >= until_ns:
        return _empty_result(state, state_ns, state_ns)

    codes = words >> 12
    is_time, tw, is_high, high_after, low_after = _clock(codes, words, state, rollover)
    time_after = high_after | low_after
    if state.valid:
        start, first_us, valid = 0, state.time_us, True
    else:
        pos = _first_valid(is_high)
        valid = pos is not None
        start = int(tw[pos]) + 1 if valid else n
        first_us = int(time_after[pos]) if valid else None

    stop, last_time, next_ns = n, tw.size - 1, None
    if until_ns is not None:
        limit_us = _clamp64(-(-until_ns // NS_PER_US) - time_offset_us)
        hits = np.flatnonzero(~is_high & (tw >= start) & (time_after >= limit_us))
        if hits.size:
            last_time = int(hits[0])
            stop = int(tw[last_time])
            next_ns = (int(time_after[last_time]) + time_offset_us) * NS_PER_US

    seg = words[start:stop]
    seg_codes = codes[start:stop]
    bad = (seg_codes == 0x1) | (seg_codes == 0x9) | ((seg_codes - np.uint16(0xB)) <= 2)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise WireError(msgtype, 'events', offset + 2 * (start + i),
                        f'unsupported EVT3 word type 0x{int(seg_codes[i]):X}')

    # Row and time in effect at each emitting word come from the count of setter words
    # before it, an index into the setters' values with the state's value at 0.
    times_before = np.cumsum(is_time[start:stop], dtype=np.int32)
    times_before += np.count_nonzero(is_time[:start])
    times_ns = (_with_first(state.time_us, time_after) + time_offset_us) * NS_PER_US
    is_row = seg_codes == ADDR_Y
    rows = _with_first(state.y, _pick(seg, is_row) & 0x7FF, np.uint16)
    new_y = int(rows[-1])

    x_words = np.flatnonzero((seg_codes - np.uint16(ADDR_X)) <= VECT_8 - ADDR_X)
    new_base, new_pol = state.base_x, state.polarity
    if x_words.size:
        xw = seg[x_words]
        y_at = rows[np.cumsum(is_row, dtype=np.int32)[x_words]]
        t_at = times_ns[times_before[x_words]]
        events, new_base, new_pol = _expand(xw >> 12, xw & 0xFFF, y_at, t_at, state,
                                            width, height)
    else:
        events = np.empty(0, EVENT_DTYPE)
    trig_words = np.flatnonzero(seg_codes == EXT_TRIGGER)
    triggers = np.empty(trig_words.size, TRIGGER_DTYPE)
    if trig_words.size:
        payload = seg[trig_words]
        triggers['t'] = times_ns[times_before[trig_words]]
        triggers['p'] = payload & 1
        triggers['id'] = (payload >> 8) & 0xF

    if last_time >= 0:
        time_high, time_low = int(high_after[last_time]), int(low_after[last_time])
    else:
        time_high, time_low = state.time_high, state.time_low
    new_state = Evt3State(new_y, time_low, time_high, new_pol, new_base, valid)
    first_ns = None if first_us is None else (first_us + time_offset_us) * NS_PER_US
    return Evt3Result(events, triggers, new_state, stop, first_ns, next_ns)


def reference_decode(words, state, width, height, until_ns=None):
    """Decode like `decode_words` (EVT3 only) with one loop step per word; for tests.

    A line-by-line port of event_camera_codecs' evt3 decode / decodeUntil, slow and plain,
    against which the vectorised decoder is checked on generated word streams.
    """
    y, low, high, pol, base, valid = (state.y, state.time_low, state.time_high,
                                      state.polarity, state.base_x, state.valid)

    def set_high(t):
        last = (high >> 12) & 0xFFF
        wrapped = 1 << 24 if t < last and last - t > 10 else 0
        return ((high + wrapped) & ~0xFFFFFF) | (t << 12)

    def result(events, triggers, consumed, first, next_ns):
        return Evt3Result(np.array(events, EVENT_DTYPE).reshape(-1),
                          np.array(triggers, TRIGGER_DTYPE).reshape(-1),
                          Evt3State(y, low, high, pol, base, valid), consumed, first, next_ns)

    words = [int(w) for w in words]
    if until_ns is not None and valid and (high | low) * NS_PER_US >= until_ns:
        return result([], [], 0, (high | low) * NS_PER_US, (high | low) * NS_PER_US)
    i, saw_high = 0, False
    while not valid and i < len(words):
        code, value = words[i] >> 12, words[i] & 0xFFF
        if code == TIME_LOW:
            low, valid = value, saw_high
        elif code == TIME_HIGH:
            high, saw_high = set_high(value), True
        i += 1
    first = (high | low) * NS_PER_US if valid else None
    events, triggers = [], []
    for j in range(i, len(words)):
        code, value = words[j] >> 12, words[j] & 0xFFF
        t = (high | low) * NS_PER_US
        if code == ADDR_X:
            if (value & 0x7FF) < width and y < height:
                events.append((t, value & 0x7FF, y, value >> 11))
        elif code == ADDR_Y:
            y = value & 0x7FF
        elif code == TIME_LOW:
            low = value
            if until_ns is not None and (high | low) * NS_PER_US >= until_ns:
                return result(events, triggers, j, first, (high | low) * NS_PER_US)
        elif code == TIME_HIGH:
            high = set_high(value)
        elif code == VECT_BASE_X:
            base, pol = value & 0x7FF, value >> 11
        elif code in (VECT_12, VECT_8):
            size = 12 if code == VECT_12 else 8
            for bit in range(size):
                x = (base + bit) & 0xFFFF
                if value >> bit & 1 and x < width and y < height:
                    events.append((t, x, y, pol))
            base = (base + size) & 0xFFFF
        elif code == EXT_TRIGGER:
            triggers.append((t, value & 1, value >> 8 & 0xF))
        elif code not in (CONTINUED_4, OTHERS, CONTINUED_12):
            raise WireError('evt3', 'events', 2 * j, f'unsupported EVT3 word type 0x{code:X}')
    return result(events, triggers, len(words), first, None)
