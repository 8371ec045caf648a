"""Event input normalisation: any supported event container to (x, y, t, p) tensors on a device.

Every representation in this package starts here, so the rules for what counts as a valid event
live in one place:

* accepted inputs: a numpy structured array with fields ``x``, ``y``, ``t``, ``p`` (for example
  ``gep_ros.wire.events.EVENT_DTYPE``, imported nowhere here), a mapping with those four keys, a
  sequence ``(x, y, t, p)``, or an :class:`EventTensors`. The arrays may be numpy arrays or torch
  tensors; tensors stay on their device unless a ``device`` is given, numpy input goes to the CPU
  unless a ``device`` is given.
* coordinates are integer pixels; float coordinates are floored. Events with ``x < 0``,
  ``y < 0``, ``x >= width`` or ``y >= height`` are dropped and counted in
  ``dropped_outside_sensor``.
* polarity: ``p > 0`` is ON (positive), anything else OFF, so both ``{0, 1}`` (the wire format)
  and ``{-1, +1}`` work.
* time: integer timestamps (nanoseconds on the wire) stay int64 so window arithmetic is exact;
  float timestamps are carried as float64.
* windows are closed, ``t0 <= t <= t1``: events outside are dropped and counted in
  ``dropped_outside_window``. Whoever slices a stream into windows decides how events on a
  shared boundary are assigned; the representation renders whatever it is given inside the
  closed interval. Event order is irrelevant (nothing here assumes sorted times).
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
import math
from typing import Optional, Union

import numpy as np
import torch

DeviceLike = Union[str, torch.device, None]
Time = Union[int, float]


def _as_tensor(values, device: DeviceLike) -> torch.Tensor:
    """Return values as a torch tensor, moved to device when one is given."""
    if isinstance(values, torch.Tensor):
        tensor = values
    else:
        array = np.asarray(values)
        if array.dtype.kind not in 'biuf':
            raise TypeError(f'event field has non-numeric dtype {array.dtype}')
        if array.dtype.kind == 'u' and array.dtype.itemsize > 1:
            # torch's uint16/32/64 support is partial (notably on CUDA): widen on the host.
            array = array.astype(np.int64)
        # Structured-array fields are strided views; torch needs a plain buffer, and one it
        # may write (a read-only window's field of one event is already contiguous).
        array = np.ascontiguousarray(array)
        tensor = torch.from_numpy(array if array.flags.writeable else array.copy())
    if tensor.dim() != 1:
        tensor = tensor.reshape(-1)
    return tensor if device is None else tensor.to(device)


def _coordinates(values: torch.Tensor) -> torch.Tensor:
    """Return integer pixel coordinates as int64 (floats are floored)."""
    if values.is_floating_point():
        values = torch.floor(values)
    return values.to(torch.int64)


def _fields(events):
    """Return the (x, y, t, p) arrays of any supported event container."""
    if isinstance(events, np.ndarray) and events.dtype.names is not None:
        missing = {'x', 'y', 't', 'p'} - set(events.dtype.names)
        if missing:
            raise ValueError(f'structured event array lacks fields {sorted(missing)}')
        return events['x'], events['y'], events['t'], events['p']
    if isinstance(events, Mapping):
        return events['x'], events['y'], events['t'], events['p']
    if isinstance(events, Sequence) and len(events) == 4:
        return tuple(events)
    raise TypeError('events must be a structured array with fields x, y, t, p, a mapping with '
                    'those keys, a sequence (x, y, t, p) or EventTensors; got '
                    f'{type(events).__name__}')


def _extremes(values: torch.Tensor):
    """Return (min, max) of a non-empty tensor as Python numbers, with one pass.

    On a CPU through numpy on the same memory: its reductions of int64 are several times
    faster than torch's there.
    """
    if values.device.type == 'cpu' and values.dtype != torch.bool:
        array = values.numpy()
        return array.min().item(), array.max().item()
    return tuple(v.item() for v in torch.aminmax(values))


def _within(values: torch.Tensor, size: int) -> bool:
    """Return whether all values (int64 pixels) lie in [0, size): a reduction, not masks."""
    if not values.numel():
        return True
    low, high = _extremes(values)
    return low >= 0 and high < size


def _between(times: torch.Tensor, lo: Time, hi: Time) -> bool:
    """Return whether all (non-empty) times lie in [lo, hi], with one reduction."""
    first, last = _extremes(times)
    return lo <= first and last <= hi


@dataclass(frozen=True)
class EventTensors:
    """Events of one sensor as 1-D tensors on one device, with drop counts.

    Attributes:
        x: (N,) int64 column, 0 <= x < width.
        y: (N,) int64 row, 0 <= y < height.
        t: (N,) int64 timestamps (float64 when the input times were floats).
        p: (N,) bool, True = ON.
        height: Sensor rows.
        width: Sensor columns.
        dropped_outside_sensor: Events removed for lying off the sensor.
        dropped_outside_window: Events removed by :meth:`in_window`.
    """

    x: torch.Tensor
    y: torch.Tensor
    t: torch.Tensor
    p: torch.Tensor
    height: int
    width: int
    dropped_outside_sensor: int = 0
    dropped_outside_window: int = 0

    @classmethod
    def from_events(cls, events, height: int, width: int,
                    device: DeviceLike = None) -> 'EventTensors':
        """Convert events to tensors on device and drop those outside the height x width sensor.

        An :class:`EventTensors` input is re-checked against the given sensor size, and its
        earlier drop counts are carried over.
        """
        height, width = int(height), int(width)
        if height <= 0 or width <= 0:
            raise ValueError(f'sensor size must be positive, got {height} x {width}')
        dropped_sensor = dropped_window = 0
        if isinstance(events, EventTensors):
            dropped_sensor = events.dropped_outside_sensor
            dropped_window = events.dropped_outside_window
            fields = (events.x, events.y, events.t, events.p)
        else:
            fields = _fields(events)
        x, y, t, p = (_as_tensor(values, device) for values in fields)
        if not x.numel() == y.numel() == t.numel() == p.numel():
            raise ValueError('event fields x, y, t, p differ in length: '
                             f'{x.numel()}, {y.numel()}, {t.numel()}, {p.numel()}')
        # Everything follows x's device so mixed inputs fail loudly in one place.
        y, t, p = (values.to(x.device) for values in (y, t, p))
        x, y = _coordinates(x), _coordinates(y)
        t = t.to(torch.float64) if t.is_floating_point() else t.to(torch.int64)
        p = p if p.dtype == torch.bool else p > 0
        if not (_within(x, width) and _within(y, height)):
            inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
            kept = int(inside.sum())
            x, y, t, p = x[inside], y[inside], t[inside], p[inside]
            dropped_sensor += inside.numel() - kept
        return cls(x, y, t, p, height, width, dropped_sensor, dropped_window)

    def in_window(self, t0: Time, t1: Time) -> 'EventTensors':
        """Keep the events with t0 <= t <= t1 and count the others as dropped."""
        check_window(t0, t1)
        lo, hi = t0, t1
        if not self.t.is_floating_point():
            # Integer times against float bounds: compare with the integers the bounds admit,
            # since torch would otherwise compare in float32 and lose nanoseconds.
            lo, hi = math.ceil(t0), math.floor(t1)
        if not len(self) or _between(self.t, lo, hi):
            return self  # the common case: a window cut to its events; two reductions
        inside = (self.t >= lo) & (self.t <= hi)
        kept = int(inside.sum())
        return replace(self, x=self.x[inside], y=self.y[inside], t=self.t[inside],
                       p=self.p[inside],
                       dropped_outside_window=self.dropped_outside_window + len(self) - kept)

    def __len__(self) -> int:
        return int(self.x.numel())

    @property
    def device(self) -> torch.device:
        return self.x.device

    @property
    def pixel(self) -> torch.Tensor:
        """Flat pixel index y * width + x, shape (N,) int64."""
        return self.y * self.width + self.x

    def elapsed(self, t0: Time) -> torch.Tensor:
        """Time since t0 per event, shape (N,): exact int64 for integer times, else float64."""
        if isinstance(t0, float) and not self.t.is_floating_point():
            # Subtract the integer part exactly first: float64 cannot hold epoch nanoseconds.
            whole = math.floor(t0)
            return (self.t - whole).to(torch.float64) - (t0 - whole)
        return self.t - t0


def check_window(t0: Time, t1: Time) -> None:
    """Reject a window that ends before it starts (t1 == t0 is a valid, instantaneous window)."""
    if t1 < t0:
        raise ValueError(f'window ends before it starts: t0={t0}, t1={t1}')


def window_events(events, t0: Time, t1: Time, height: int, width: int,
                  device: DeviceLike = None) -> EventTensors:
    """Return the events on the height x width sensor with t0 <= t <= t1, drops counted."""
    check_window(t0, t1)
    return EventTensors.from_events(events, height, width, device=device).in_window(t0, t1)


def accumulate(size: int, index: torch.Tensor, values: Optional[torch.Tensor] = None,
               dtype: torch.dtype = torch.int64) -> torch.Tensor:
    """Sum values (default 1 per index) into a flat (size,) tensor; duplicates add up.

    Counts go through bincount. Weighted sums add in index order, so floats are deterministic:
    on a CPU through bincount's serial loop (index_put_ with accumulate=True adds with
    atomics in parallel there, in an order that changes from run to run, from 32768 values
    on more than one thread); on CUDA through index_put_ with accumulate=True, which sorts
    the indices first. Integer counts are exact whatever the order.
    """
    if values is None:  # counts: one bincount, an index outside [0, size) is an error
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= size):
            raise IndexError(f'index out of range for {size} bins')
        return torch.bincount(index, minlength=size).to(dtype)
    values = values.to(dtype)
    if index.device.type == 'cpu' and dtype in (torch.float32, torch.float64) \
            and index.numel():  # (bincount gives int64 for no values)
        if int(index.min()) < 0 or int(index.max()) >= size:
            raise IndexError(f'index out of range for {size} bins')
        return torch.bincount(index, weights=values, minlength=size)
    out = torch.zeros(size, dtype=dtype, device=index.device)
    return out.index_put_((index,), values, accumulate=True)
