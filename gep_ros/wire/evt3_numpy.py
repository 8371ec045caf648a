"""Prophesee EVT 3.0 words decoded with numpy, without a loop per word: the tests' oracle.

This was the package's EVT3 decoder before the compiled kernel (`evt3.py`, `_kernels.c`)
replaced it; it stays as an independent second implementation, written the other way round
(whole arrays instead of word after word), against which the kernel is checked on every
test and property test, and as the in-run baseline of `gep bench wire`. Same arguments,
results and errors as `evt3.decode_words` / `evt3.decode_run`; the conventions are in
`evt3.py`.

How the loop is avoided: the value of a state variable at a word is the value written by
the last setter word before it, i.e. an index, the running count of setter words (an int32
cumulative sum), into the setters' values with the previous state's value at index 0. The
rollover count is a cumulative sum over TIME_HIGH words, and ADDR_X is treated as a 1-bit
vector so that ADDR_X, VECT_12 and VECT_8 words expand together through one bit matrix,
keeping word and bit order. (Boolean-mask indexing, np.nonzero on 2-D arrays, searchsorted
and maximum.accumulate were each several times slower here than flatnonzero + take.)

A call costs some 40 numpy calls whatever its size, about 60 us, which dominates packets of
a few hundred events; `decode_run` decodes the concatenated words of consecutive packets in
one call once the clock is valid.
"""

import numpy as np

from .cdr import WireError
from .events import EVENT_DTYPE, TRIGGER_DTYPE
from .evt3 import (ADDR_X, ADDR_Y, check_run, clamp_int64, Evt3Result, Evt3Run, Evt3State,
                   EXT_TRIGGER, NS_PER_US, ROLLOVER_TOLERANCE, TIME_HIGH, TIME_LOW, VECT_12,
                   VECT_8, VECT_BASE_X)

# Word types as bits: those a packet must not contain, and those of the vector words.
_UNSUPPORTED = (1 << 0x1) | (1 << 0x9) | (1 << 0xB) | (1 << 0xC) | (1 << 0xD)
_VECTOR_WORDS = (1 << VECT_BASE_X) | (1 << VECT_12) | (1 << VECT_8)
# How far base x advances after a vector word, by word type.
_ADVANCE = np.zeros(16, np.uint16)
_ADVANCE[VECT_12] = 12
_ADVANCE[VECT_8] = 8


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
    """`evt3.decode_words`, vectorised with numpy."""
    return _decode(words, state, width, height, until_ns, rollover, time_offset_us, msgtype,
                   offset, None)[0]


def decode_run(words, bounds, state, width, height, *, rollover=True, time_offset_us=0,
               msgtype='evt3', offset=0):
    """`evt3.decode_run`, vectorised with numpy."""
    bounds = check_run(words, bounds, state)
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
        limit_us = clamp_int64(-(-until_ns // NS_PER_US) - time_offset_us)
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
