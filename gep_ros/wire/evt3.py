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

A call costs some 40 numpy calls whatever its size, about 60 us, which dominates packets of
a few hundred events. `decode_run` therefore decodes the concatenated words of consecutive
packets in one call once the clock is valid (a packet boundary then changes nothing) and
reports where each packet's events and triggers start and its first sensor time.
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

# Word types as bits: those a packet must not contain, and those of the vector words.
_UNSUPPORTED = (1 << 0x1) | (1 << 0x9) | (1 << 0xB) | (1 << 0xC) | (1 << 0xD)
_VECTOR_WORDS = (1 << VECT_BASE_X) | (1 << VECT_12) | (1 << VECT_8)
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
    the time words, which of them are TIME_HIGH, and the high part (rollover included, (K,)
    int64) and the low part ((K,) uint16) of the clock after each. The 12-bit payloads stay
    16-bit until they are placed: the fewer bytes the temporaries take, the faster.
    """
    is_time = codes == TIME_LOW
    is_time |= codes == TIME_HIGH
    tw = np.flatnonzero(is_time)
    tword = words[tw]
    is_high = tword >= TIME_HIGH << 12
    high = _pick(tword, is_high) & np.uint16(0xFFF)
    wide = high.astype(np.int64) << 12
    if rollover:
        previous = _with_first((state.time_high >> 12) & 0xFFF, high[:-1], np.int16)
        previous = previous[:high.size]  # one element too many when there is no TIME_HIGH
        previous -= high.view(np.int16)  # payloads are 12-bit: no overflow
        wraps = np.cumsum(previous > ROLLOVER_TOLERANCE)
        wraps += state.time_high >> 24
        wraps <<= 24
        wide |= wraps
    high_after = _with_first(state.time_high, wide)[np.cumsum(is_high, dtype=np.int32)]
    is_low = ~is_high
    lows = _pick(tword, is_low) & np.uint16(0xFFF)
    low_after = _with_first(state.time_low, lows, np.uint16)[np.cumsum(is_low, dtype=np.int32)]
    return is_time, tw, is_high, high_after, low_after


def _times_ns(all_us, index, time_offset_us):
    """Return the times in ns at these indices into `all_us` (int64 arithmetic, wrapping)."""
    t = all_us[index]
    if time_offset_us:
        t += time_offset_us
    t *= NS_PER_US
    return t


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


def _expand(code, payload, y_at, t_at, state, width, height, vectors, source=False):
    """CD events of the X-related words; returns (events, base_x and polarity after, source).

    `code` / `payload` ((M,) uint16) are the words of types 2..5, `y_at` / `t_at` the row and
    time (ns) in effect at each; `vectors` is false when all of them are ADDR_X. With
    `source`, `source` is each event's index into those M words (non-decreasing), or None
    where that is the identity; without, None.
    """
    new_base, new_pol = state.base_x, state.polarity
    src = None
    if vectors:
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
        if source:
            src = emit[row]
    else:
        emit = y_at < height
        if not emit.all():
            emit = np.flatnonzero(emit)
            payload, y_at, t_at = payload[emit], y_at[emit], t_at[emit]
            if source:
                src = emit
        x = payload & np.uint16(0x7FF)
        pol = (payload >> 11).astype(np.uint8)
    keep = x < width
    if not keep.all():
        keep = np.flatnonzero(keep)
        x, y_at, t_at, pol = x[keep], y_at[keep], t_at[keep], pol[keep]
        if source:
            src = keep if src is None else src[keep]
    out = np.empty(x.size, EVENT_DTYPE)
    out['x'] = x
    out['y'] = y_at
    out['t'] = t_at
    out['p'] = pol
    return out, new_base, new_pol, src


def decode_words(words, state, width, height, until_ns=None, *, rollover=True,
                 time_offset_us=0, msgtype='evt3', offset=0):
    """Decode EVT3 words (a (W,) uint16 little-endian array) given the stream's state.

    `until_ns` stops at the first TIME_LOW whose time (ns) is >= it; that word is not
    consumed, so a later call with a higher limit resumes there. `rollover=False` and
    `time_offset_us` serve libcaer_cmp, which reuses this decoder with a clock that never
    wraps and starts at the message's time base. `msgtype` / `offset` (byte offset of the
    first word in the message) name the place of an unsupported word in the WireError.
    """
    return _decode(words, state, width, height, until_ns, rollover, time_offset_us, msgtype,
                   offset, None)[0]


@dataclass
class Evt3Run:
    """What one call of `decode_run` produced: the whole run's result and where packets start.

    Packet k's events are `result.events[events_at[k]:events_at[k + 1]]`, its triggers
    likewise, and `start_time_us[k]` (extended microseconds, without `time_offset_us`) is the
    clock in effect at its first word, i.e. its first sensor time.
    """

    result: Evt3Result
    events_at: np.ndarray  # (P + 1,) int64, events decoded from the words before each bound
    triggers_at: np.ndarray  # (P + 1,) int64, triggers likewise
    start_time_us: np.ndarray  # (P,) int64


def decode_run(words, bounds, state, width, height, *, rollover=True, time_offset_us=0,
               msgtype='evt3', offset=0):
    """Decode the concatenated words of consecutive packets in one call; see `Evt3Run`.

    `bounds` ((P + 1,) word offsets, 0 first and `words.size` last) are where the packets
    start. Decoding packet after packet with `decode_words` gives the same events, triggers
    and state provided the clock is already valid (`state.valid`): only then does no packet
    have its own first valid time, so that a packet boundary changes nothing.
    """
    if not state.valid:
        raise ValueError('decode_run needs a valid clock; decode packet by packet until then')
    bounds = np.asarray(bounds, np.int64)
    if bounds.size < 1 or bounds[0] != 0 or bounds[-1] != np.size(words) \
            or np.any(np.diff(bounds) < 0):
        raise ValueError('bounds must rise from 0 to the number of words')
    return _decode(words, state, width, height, None, rollover, time_offset_us, msgtype,
                   offset, bounds)[1]


def _decode(words, state, width, height, until_ns, rollover, time_offset_us, msgtype, offset,
            bounds):
    """`decode_words`, and with `bounds` (valid clock, no time limit) also `decode_run`.

    Returns (Evt3Result, Evt3Run or None).
    """
    words = np.asarray(words, dtype='<u2')
    n = words.size
    state_ns = (state.time_us + time_offset_us) * NS_PER_US
    if until_ns is not None and state.valid and state_ns >= until_ns:
        return _empty_result(state, state_ns, state_ns), None

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
    # Which word types occur, as bits of one integer: one pass finds unsupported words and
    # tells which of the work below is needed.
    present = int(np.bitwise_or.reduce(np.left_shift(np.uint16(1), seg_codes)))
    if present & _UNSUPPORTED:
        bad = np.flatnonzero((np.uint16(1) << seg_codes) & np.uint16(_UNSUPPORTED))
        i = int(bad[0])
        raise WireError(msgtype, 'events', offset + 2 * (start + i),
                        f'unsupported EVT3 word type 0x{int(seg_codes[i]):X}')

    # Row and time in effect at each emitting word come from the count of setter words
    # before it, an index into the setters' values with the state's value at 0.
    times_before = np.cumsum(is_time[start:stop], dtype=np.int32)
    if start:
        times_before += np.count_nonzero(is_time[:start])
    all_us = _with_first(state.time_us, time_after)
    is_row = seg_codes == ADDR_Y
    rows = _with_first(state.y, _pick(seg, is_row) & np.uint16(0x7FF), np.uint16)
    new_y = int(rows[-1])

    x_words = np.flatnonzero((seg_codes - np.uint16(ADDR_X)) <= VECT_8 - ADDR_X)
    new_base, new_pol = state.base_x, state.polarity
    split = bounds is not None
    source = None  # each event's index into x_words; None: the identity
    if x_words.size:
        xw = seg[x_words]
        y_at = rows[np.cumsum(is_row, dtype=np.int32)[x_words]]
        t_at = _times_ns(all_us, times_before[x_words], time_offset_us)
        events, new_base, new_pol, source = _expand(
            xw >> 12, xw & np.uint16(0xFFF), y_at, t_at, state, width, height,
            present & _VECTOR_WORDS, split)
    else:
        events = np.empty(0, EVENT_DTYPE)
    if present & 1 << EXT_TRIGGER:
        trig_words = np.flatnonzero(seg_codes == EXT_TRIGGER)
        payload = seg[trig_words]
        triggers = np.empty(trig_words.size, TRIGGER_DTYPE)
        triggers['t'] = _times_ns(all_us, times_before[trig_words], time_offset_us)
        triggers['p'] = payload & 1
        triggers['id'] = (payload >> 8) & 0xF
    else:
        trig_words, triggers = np.empty(0, np.intp), np.empty(0, TRIGGER_DTYPE)

    if last_time >= 0:
        time_high, time_low = int(high_after[last_time]), int(low_after[last_time])
    else:
        time_high, time_low = state.time_high, state.time_low
    new_state = Evt3State(new_y, time_low, time_high, new_pol, new_base, valid)
    first_ns = None if first_us is None else (first_us + time_offset_us) * NS_PER_US
    result = Evt3Result(events, triggers, new_state, stop, first_ns, next_ns)
    if not split:
        return result, None
    # The words are all decoded (start 0, no limit): count what came before each bound.
    events_at = np.searchsorted(x_words, bounds)
    if source is not None:
        events_at = np.searchsorted(source, events_at)
    triggers_at = np.searchsorted(trig_words, bounds)
    start_us = all_us[np.searchsorted(tw, bounds[:-1])]
    return result, Evt3Run(result, events_at, triggers_at, start_us)


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
