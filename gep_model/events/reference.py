"""The representations as they were rendered before the fast paths: oracle and baseline.

`render(name, params, events, t0, t1, height, width)` renders a window with the code that
`gep_model.events` ran before its counts went through int32 index_add_, the percentile's
histogram through the events and the voxel sums through an ordered bincount: masks over
every event to keep them, int64 counts by bincount, the percentile from a histogram of
both count images, index_put_ for the voxel sums. The tests check the representations
against it bit for bit; `gep bench events` times it in the same run as the baseline.

One difference is deliberate: index_put_ with accumulate=True adds floats in parallel
with atomics on a CPU with more than one thread (from 32768 values on), in an order that
changes from run to run, so the voxel grid it gives there is not reproducible; the voxel
grid now adds in event order on any number of threads, which is what this code gives on
one thread (`torch.set_num_threads(1)` around it, as the tests do).
"""

import math
from typing import Any, Dict

import torch

from gep_model.events.polarity_rgb import nonzero_percentile
from gep_model.events.stacked_histogram import time_bins
from gep_model.events.tensors import _as_tensor, _coordinates, _fields, check_window, Time
from gep_model.events.voxel_grid import bin_positions


def window(events, t0: Time, t1: Time, height: int, width: int, device=None):
    """Return (x, y, t, p) of the events on the sensor and in [t0, t1], through masks."""
    check_window(t0, t1)
    x, y, t, p = (_as_tensor(values, device) for values in _fields(events))
    y, t, p = (values.to(x.device) for values in (y, t, p))
    x, y = _coordinates(x), _coordinates(y)
    t = t.to(torch.float64) if t.is_floating_point() else t.to(torch.int64)
    p = p if p.dtype == torch.bool else p > 0
    inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    if int(inside.sum()) != x.numel():
        x, y, t, p = x[inside], y[inside], t[inside], p[inside]
    lo, hi = (t0, t1) if t.is_floating_point() else (math.ceil(t0), math.floor(t1))
    inside = (t >= lo) & (t <= hi)
    if int(inside.sum()) != x.numel():
        x, y, t, p = x[inside], y[inside], t[inside], p[inside]
    return x, y, t, p


def _counts(size: int, index: torch.Tensor) -> torch.Tensor:
    return torch.bincount(index, minlength=size)  # int64


def _polarity_counts(x, y, p, height, width):
    plane = height * width
    return _counts(2 * plane, p.to(torch.int64) * plane + y * width + x).view(2, height, width)


def polarity_rgb(x, y, p, height, width, percentile=90.0, channel_order='rgb'):
    """Render GEP's polarity image, (3, H, W) float32, as `PolarityRGB` did."""
    counts = _polarity_counts(x, y, p, height, width)  # (2, H, W) int64: OFF, ON
    flat = counts.reshape(2, -1)
    threshold = nonzero_percentile(flat, percentile)[:, None]
    safe = torch.where(threshold > 0, threshold, torch.ones_like(threshold))
    off, on = (torch.minimum(flat.to(torch.float32), safe) / safe).view(counts.shape)
    on_wins = on >= off
    green = 1 - torch.where(on_wins, on, off)
    white = torch.ones((), dtype=green.dtype, device=green.device)
    image = torch.stack((torch.where(on_wins, white, green), green,
                         torch.where(on_wins, green, white)))
    return image.flip(0) if channel_order == 'bgr' else image


def histogram(x, y, p, height, width, count_cutoff=None):
    """Count OFF and ON events, (2, H, W) float32, as `Histogram` did."""
    counts = _polarity_counts(x, y, p, height, width)
    if count_cutoff is not None:
        counts = counts.clamp_(max=count_cutoff)
    return counts.to(torch.float32)


class _Times:
    """The part of EventTensors that time binning reads."""

    def __init__(self, x, t):
        self.x, self.t = x, t
        self.device = x.device

    def __len__(self):
        return int(self.x.numel())

    def elapsed(self, t0):
        if isinstance(t0, float) and not self.t.is_floating_point():
            whole = math.floor(t0)
            return (self.t - whole).to(torch.float64) - (t0 - whole)
        return self.t - t0


def voxel_grid(x, y, t, p, t0, t1, height, width, bins=5):
    """Interpolate polarity over C time bins, (C, H, W) float32, as `VoxelGrid` did."""
    tau = bin_positions(_Times(x, t), t0, t1, bins)
    left = torch.floor(tau).clamp_(0, bins - 1)
    right_share = tau - left
    value = p.to(torch.float64) * 2 - 1
    left_bin = left.to(torch.int64)
    right_bin = (left_bin + 1).clamp_(max=bins - 1)
    plane = height * width
    pixel = y * width + x
    index = torch.cat((left_bin * plane + pixel, right_bin * plane + pixel))
    weight = torch.cat((value * (1 - right_share), value * right_share))
    grid = torch.zeros(bins * plane, dtype=torch.float32, device=x.device)
    grid.index_put_((index,), weight.to(torch.float32), accumulate=True)
    return grid.view(bins, height, width)


def stacked_histogram(x, y, t, p, t0, t1, height, width, bins=10, count_cutoff=10,
                      channel_order='time_major'):
    """Count per time bin and polarity, (2 T, H, W) float32, as `StackedHistogram` did."""
    time_bin = time_bins(_Times(x, t), t0, t1, bins)
    polarity = p.to(torch.int64)
    channel = 2 * time_bin + polarity if channel_order == 'time_major' \
        else bins * polarity + time_bin
    counts = _counts(2 * bins * height * width, channel * (height * width) + y * width + x)
    if count_cutoff is not None:
        counts = counts.clamp_(max=count_cutoff)
    return counts.to(torch.float32).view(2 * bins, height, width)


def render(name: str, params: Dict[str, Any], events, t0: Time, t1: Time, height: int,
           width: int, device=None) -> torch.Tensor:
    """Render a window as the representation `name` with `params` did before; (C, H, W)."""
    x, y, t, p = window(events, t0, t1, height, width, device)
    if name == 'polarity_rgb':
        return polarity_rgb(x, y, p, height, width, **params)
    if name == 'histogram':
        return histogram(x, y, p, height, width, **params)
    if name == 'voxel_grid':
        return voxel_grid(x, y, t, p, t0, t1, height, width, **params)
    if name == 'stacked_histogram':
        return stacked_histogram(x, y, t, p, t0, t1, height, width, **params)
    raise ValueError(f'no reference for representation {name!r}')
