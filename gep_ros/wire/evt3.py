"""Prophesee EVT 3.0 word streams decoded into event arrays by a compiled kernel.

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

The words are decoded one after the other by `_kernels.evt3_decode` (C, `_kernels.c`) into
arrays allocated here: one pass over the words, a few microseconds a packet whatever its
size, so packets are decoded as they arrive. Two independent implementations check it in
the tests: `evt3_numpy` (the vectorised numpy decoder it replaced) and `reference_decode`
below (a per-word Python port of the reference C++ decoder). `decode_run` decodes the
concatenated words of consecutive packets in one call once the clock is valid (a packet
boundary then changes nothing) and reports where each packet's events and triggers start
and its first sensor time.
"""

from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np

from .cdr import WireError
from .events import EVENT_DTYPE, TRIGGER_DTYPE
from .kernels import kernels

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

NS_PER_US = 1000
# A TIME_HIGH that falls back by at most this many steps is bit noise, not a wrap.
ROLLOVER_TOLERANCE = 10
_I64_MAX = np.iinfo(np.int64).max
_I64_MIN = np.iinfo(np.int64).min
_WORD = np.dtype('<u2')


class Evt3State(NamedTuple):
    """Decoder state between packets of one stream (immutable).

    `time_high` holds the TIME_HIGH payload shifted left by 12 plus the rollover count times
    2^24, so `time_high | time_low` is the extended time in microseconds. A named tuple, as
    the kernel builds one per packet.
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


# The kernel returns states of this class.
kernels.setup_evt3(Evt3State, Evt3State())


@dataclass
class Evt3Result:
    """What one call of `decode_words` produced."""

    events: np.ndarray  # (N,) EVENT_DTYPE, t in sensor ns
    triggers: np.ndarray  # (M,) TRIGGER_DTYPE
    state: Evt3State  # state after the consumed words
    consumed: int  # words consumed; fewer than given only when the time limit was reached
    first_time_ns: Optional[int]  # time in effect at the first decoded word, None if not valid
    next_time_ns: Optional[int]  # time that stopped decoding, None if all words were consumed


def clamp_int64(value):
    """Clamp a Python int into the int64 range."""
    return min(max(value, _I64_MIN), _I64_MAX)


def check_run(words, bounds, state):
    """Check `decode_run`'s preconditions; return the bounds as an int64 array."""
    if not state.valid:
        raise ValueError('decode_run needs a valid clock; decode packet by packet until then')
    bounds = np.ascontiguousarray(bounds, np.int64)
    if bounds.ndim != 1 or bounds.size < 1 or bounds[0] != 0 or bounds[-1] != np.size(words) \
            or np.any(np.diff(bounds) < 0):
        raise ValueError('bounds must rise from 0 to the number of words')
    return bounds


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
    bounds = check_run(words, bounds, state)
    return _decode(words, state, width, height, None, rollover, time_offset_us, msgtype,
                   offset, bounds)[1]


def _decode(words, state, width, height, until_ns, rollover, time_offset_us, msgtype, offset,
            bounds):
    """`decode_words`, and with `bounds` (valid clock, no time limit) also `decode_run`.

    Returns (Evt3Result, Evt3Run or None).
    """
    words = np.ascontiguousarray(words, dtype=_WORD)
    limit_us = None
    if until_ns is not None:
        if state.valid:
            state_ns = (state.time_us + time_offset_us) * NS_PER_US
            if state_ns >= until_ns:
                return Evt3Result(np.empty(0, EVENT_DTYPE), np.empty(0, TRIGGER_DTYPE), state,
                                  0, state_ns, state_ns), None
        limit_us = clamp_int64(-(-until_ns // NS_PER_US) - time_offset_us)
    bad, events, triggers, new_state, _, stop, first_us, marks = kernels.evt3_decode(
        words, state, width, height, limit_us, rollover, time_offset_us, bounds)
    if bad >= 0:
        raise WireError(msgtype, 'events', offset + 2 * bad,
                        f'unsupported EVT3 word type 0x{int(words[bad]) >> 12:X}')
    first_ns = None if first_us is None else (first_us + time_offset_us) * NS_PER_US
    next_ns = None
    if stop < words.size:  # stopped by the time limit, at a TIME_LOW already applied
        next_ns = (new_state.time_us + time_offset_us) * NS_PER_US
    result = Evt3Result(events, triggers, new_state, stop, first_ns, next_ns)
    if bounds is None:
        return result, None
    count = bounds.size
    return result, Evt3Run(result, marks[:count], marks[count:2 * count],
                           marks[2 * count:3 * count - 1])


def reference_decode(words, state, width, height, until_ns=None):
    """Decode like `decode_words` (EVT3 only) with one loop step per word; for tests.

    A line-by-line port of event_camera_codecs' evt3 decode / decodeUntil, slow and plain,
    against which the kernel and the numpy decoder are checked on generated word streams.
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
