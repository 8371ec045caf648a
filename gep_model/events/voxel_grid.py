"""Voxel grid: event polarities spread over C time bins by linear interpolation in time.

Time scaling (the one convention implemented): an event at time t in the window [t0, t1] sits at
the fractional bin position

    tau = (t - t0) / (t1 - t0) * (C - 1)

so t0 is the centre of bin 0 and t1 the centre of bin C - 1. The event adds its polarity value
(+1 ON, -1 OFF) to the two bins around tau: ``1 - frac(tau)`` of it to bin ``floor(tau)`` and
``frac(tau)`` to bin ``floor(tau) + 1``; an event exactly on a bin centre lands wholly in that
bin. With C = 5 an event at the window midpoint lands wholly in bin 2, one a quarter of the way
in bin 1, one an eighth of the way half in bin 0 and half in bin 1. A zero-length window
(t1 == t0), and C == 1, put every event in bin 0. The sum over bins of a pixel is its ON count
minus its OFF count. Coordinates are integer pixels, so there is no spatial interpolation.

How this relates to the other conventions in public code:

* E2VID (uzh-rpg/rpg_e2vid ``utils/inference_utils.py``, ``events_to_voxel_grid``) and E-RAFT
  (uzh-rpg/E-RAFT ``utils/dsec_utils.py``, ``VoxelGrid.convert``) use the same C - 1 scaling
  but normalise by the first and last *event* times, ``t[0]`` and ``t[-1]``, which assumes
  sorted events and stretches a sparse window over all bins. We use the window bounds, so the
  bins mean the same time slices for every window; for a window whose first and last events are
  at t0 and t1 the two agree. E-RAFT also standardises the nonzero voxels (mean / std); this
  module does not normalise.
* Dividing by C instead, ``(t - t0) / (t1 - t0) * C`` with floor, is the rule of RVT's
  ``StackedHistogram`` (uzh-rpg/RVT ``data/utils/representations.py``), a hard-binned count
  (see ``stacked_histogram``), where bin edges rather than bin centres sit on t0 and t1.
"""

from typing import Any, Dict

import torch

from gep_model.events.base import register_representation, Representation
from gep_model.events.histogram import index_dtype
from gep_model.events.records import integer_span, voxel_grid
from gep_model.events.tensors import accumulate, EventTensors, Time


def bin_positions(events: EventTensors, t0: Time, t1: Time, bins: int) -> torch.Tensor:
    """Return tau = (t - t0) / (t1 - t0) * (bins - 1) per event, shape (N,) float64."""
    span = t1 - t0
    if span == 0 or bins == 1:
        return torch.zeros(len(events), dtype=torch.float64, device=events.device)
    # float64 keeps nanosecond offsets exact for windows up to ~100 days.
    return events.elapsed(t0).to(torch.float64) * (bins - 1) / span


@register_representation
class VoxelGrid(Representation):
    """Polarity (+1 / -1) interpolated linearly between C time bins, (C, H, W) float32.

    Args:
        bins: Number of time bins C (>= 1).
    """

    name = 'voxel_grid'

    def __init__(self, bins: int = 5):
        if isinstance(bins, bool) or int(bins) != bins or bins < 1:
            raise ValueError(f'bins must be a positive integer, got {bins!r}')
        self.bins = int(bins)

    @property
    def channels(self) -> int:
        return self.bins

    def _param_values(self) -> Dict[str, Any]:
        return {'bins': self.bins}

    def render(self, events: EventTensors, t0: Time, t1: Time) -> torch.Tensor:
        height, width, bins = events.height, events.width, self.bins
        tau = bin_positions(events, t0, t1, bins)  # (N,) in [0, C - 1]
        left = torch.floor(tau).clamp_(0, bins - 1)
        right_share = tau - left  # (N,) in [0, 1)
        value = events.p.to(torch.float64) * 2 - 1  # (N,) +1 ON, -1 OFF
        plane = height * width
        itype = index_dtype(bins * plane)
        left_bin = left.to(itype)
        # An event on the last bin centre has right_share 0; clamping its right neighbour
        # onto the last bin adds that zero there instead of writing past the grid.
        right_bin = (left_bin + 1).clamp_(max=bins - 1)
        pixel = events.y.to(itype) * width + events.x.to(itype)
        index = torch.cat((left_bin * plane + pixel, right_bin * plane + pixel))
        # Weights in float64, then float32, added left shares first, then right shares, in
        # event order: the same float32 sums however many threads run.
        weight = torch.cat((value * (1 - right_share), value * right_share))
        grid = accumulate(bins * plane, index, weight, dtype=torch.float32)
        return grid.view(bins, height, width)

    def render_records(self, records, t0: Time, t1: Time, height: int, width: int):
        span = integer_span(t0, t1, self.bins)
        if span is None:
            return None  # float times: the float64 elapsed time of EventTensors.elapsed
        return voxel_grid(records, t0, t1, height, width, self.bins, span)
