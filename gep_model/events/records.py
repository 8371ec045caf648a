"""The pipeline's windows as event records, rendered in one compiled pass each.

gep_ros's windows hold their events as 16-byte records (`gep_ros.wire.events.EVENT_DTYPE`).
In CPU memory every representation renders them without converting them to tensors first:
one pass over the records applies the window and sensor checks of `window_events` and counts
(or, for the voxel grid, adds) in the order and arithmetic of the tensors' `render`, so that
both give the same bits (the tests compare). Anything else takes the tensors' way.
"""

import math
import numbers
from typing import Optional

import numpy as np
import torch

from gep_model.events.kernels import kernels
from gep_model.events.tensors import check_window, Time

# gep_ros.wire.events.EVENT_DTYPE, the records the pipeline's windows hold.
RECORD_DTYPE = np.dtype({'names': ['t', 'x', 'y', 'p'], 'formats': ['<i8', '<u2', '<u2', 'u1'],
                         'offsets': [0, 8, 10, 12], 'itemsize': 16})
_INT64 = np.iinfo(np.int64)
FLOAT_COUNTS = 2**24  # float32 holds every whole number up to here


def host_records(events, device=None) -> bool:
    """Whether events are records in CPU memory that are to be rendered there."""
    return (isinstance(events, np.ndarray) and events.dtype == RECORD_DTYPE
            and (device is None or torch.device(device).type == 'cpu'))


def window_bounds(t0: Time, t1: Time):
    """Return the integer times a window [t0, t1] admits, within int64, as `in_window` does."""
    check_window(t0, t1)
    return max(math.ceil(t0), _INT64.min), min(math.floor(t1), _INT64.max)


def integer_span(t0: Time, t1: Time, bins: int):
    """Return t1 - t0 where the kernels bin times as the tensors do, else None.

    That is for integer times whose span times `bins` stays within int64; other windows are
    binned in float64 by the tensors' way.
    """
    if not (isinstance(t0, numbers.Integral) and isinstance(t1, numbers.Integral)):
        return None
    span = int(t1) - int(t0)
    if not _INT64.min <= int(t0) <= _INT64.max or span > _INT64.max // max(bins, 1):
        return None
    return span


def stacked_counts(records: np.ndarray, t0: Time, t1: Time, height: int, width: int,
                   bins: int, span: int, cutoff: Optional[int],
                   polarity_major: bool = False) -> Optional[torch.Tensor]:
    """Count records per time bin, polarity and pixel: (2 * bins, H, W) float32, or None.

    `record_stack`: each count stops at `cutoff` (None: none). span: t1 - t0 from
    `integer_span`, or 0 for one bin (any window: times only select). None where a count
    might pass 2^24, above which float32 does not count one by one (the tensors' way).
    """
    limit = len(records) if cutoff is None else min(cutoff, len(records))
    if limit > FLOAT_COUNTS:
        return None
    lo, hi = window_bounds(t0, t1)
    counts = torch.empty((2 * bins, height, width), dtype=torch.float32)
    start = int(t0) if span else lo
    kernels.record_stack(records, lo, hi, width, height, start, span, bins, counts.numpy(),
                         polarity_major, max(limit, 1))
    return counts


def voxel_grid(records: np.ndarray, t0: Time, t1: Time, height: int, width: int, bins: int,
               span: int) -> torch.Tensor:
    """Return the voxel grid of records, (bins, H, W) float32 (`record_voxels`).

    span: t1 - t0 from `integer_span`.
    """
    lo, hi = window_bounds(t0, t1)
    grid = torch.empty((bins, height, width), dtype=torch.float32)
    kernels.record_voxels(records, lo, hi, width, height, int(t0), span, bins, grid.numpy())
    return grid
