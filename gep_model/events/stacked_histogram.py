"""Stacked histogram: the window cut into T equal time bins, a (OFF, ON) count image per bin.

Time binning: an event at time t goes to bin ``floor((t - t0) * T / (t1 - t0))`` of the window
[t0, t1], clamped to T - 1 so that t == t1 falls in the last bin; a zero-length window
(t1 == t0) puts every event in bin 0. Integer timestamps are binned with integer arithmetic,
so the bin of an event is exact and independent of event order.

This is RVT's ``StackedHistogram`` rule (uzh-rpg/RVT ``data/utils/representations.py``:
multiply the normalised time by the number of bins, floor, clamp), except that RVT normalises
by the first and last event times (it assumes sorted events) where we use the window bounds, so
a window's bins do not move with its content.

GEP's ECDDP baseline (``src/pre_dse_ecddp.py`` in the GEP code) instead splits a window into
chunks of equal *event count* and concatenates ECDDP (OFF, ON) histograms, 10 chunks giving the
20-channel tensors its datasets load; it does not clip counts. Equal-time bins are what is
rendered here.

Channel order (``channel_order``):

* ``'time_major'`` (default, GEP's ECDDP layout): ``[bin0 OFF, bin0 ON, bin1 OFF, bin1 ON, ...]``,
  channel = 2 * bin + polarity;
* ``'polarity_major'`` (RVT's layout): ``[OFF bin0 .. OFF binT-1, ON bin0 .. ON binT-1]``,
  channel = T * polarity + bin.

Counts are clipped at ``count_cutoff`` (default 10, RVT's published setting; None disables).
"""

from typing import Any, Dict, Optional

import torch

from gep_model.events.base import register_representation, Representation
from gep_model.events.histogram import check_cutoff, count_index, index_dtype
from gep_model.events.records import integer_span, stacked_counts
from gep_model.events.tensors import EventTensors, Time

CHANNEL_ORDERS = ('time_major', 'polarity_major')


def time_bins(events: EventTensors, t0: Time, t1: Time, bins: int) -> torch.Tensor:
    """Return each event's time bin in [0, bins - 1] for the window [t0, t1], shape (N,) int64."""
    elapsed = events.elapsed(t0)  # (N,) >= 0
    span = t1 - t0
    if span == 0:
        return torch.zeros_like(events.x)
    if elapsed.is_floating_point() or isinstance(span, float):
        index = torch.floor(elapsed.to(torch.float64) * bins / span).to(torch.int64)
    else:
        index = torch.div(elapsed * bins, int(span), rounding_mode='floor')
    return index.clamp_(0, bins - 1)


@register_representation
class StackedHistogram(Representation):
    """T time bins x 2 polarities of clipped event counts, (2 * T, H, W) float32.

    Args:
        bins: Number of time bins T (>= 1).
        count_cutoff: Clip each count at this value (None: no clip).
        channel_order: 'time_major' (GEP's ECDDP) or 'polarity_major' (RVT).
    """

    name = 'stacked_histogram'

    def __init__(self, bins: int = 10, count_cutoff: Optional[int] = 10,
                 channel_order: str = 'time_major'):
        if isinstance(bins, bool) or int(bins) != bins or bins < 1:
            raise ValueError(f'bins must be a positive integer, got {bins!r}')
        if channel_order not in CHANNEL_ORDERS:
            raise ValueError(f'channel_order must be one of {CHANNEL_ORDERS}, '
                             f'got {channel_order!r}')
        self.bins = int(bins)
        self.count_cutoff = check_cutoff(count_cutoff)
        self.channel_order = channel_order

    @property
    def channels(self) -> int:
        return 2 * self.bins

    def _param_values(self) -> Dict[str, Any]:
        return {'bins': self.bins, 'count_cutoff': self.count_cutoff,
                'channel_order': self.channel_order}

    def channel_of(self, time_bin: int, on: bool) -> int:
        """Return the output channel holding the given time bin and polarity."""
        if self.channel_order == 'time_major':
            return 2 * time_bin + int(on)
        return self.bins * int(on) + time_bin

    def render(self, events: EventTensors, t0: Time, t1: Time) -> torch.Tensor:
        height, width = events.height, events.width
        plane = height * width
        itype = index_dtype(self.channels * plane)
        time_bin = time_bins(events, t0, t1, self.bins).to(itype)  # (N,)
        polarity = events.p.to(itype)  # (N,) 1 = ON
        if self.channel_order == 'time_major':
            channel = 2 * time_bin + polarity
        else:
            channel = self.bins * polarity + time_bin
        index = (channel * height + events.y.to(itype)) * width + events.x.to(itype)
        counts = count_index(index, self.channels * plane)  # int32
        if self.count_cutoff is not None:
            counts = counts.clamp_(max=self.count_cutoff)
        return counts.to(torch.float32).view(self.channels, height, width)

    def render_records(self, records, t0: Time, t1: Time, height: int, width: int):
        span = integer_span(t0, t1, self.bins)
        if span is None:
            return None  # float times: binned in float64 by time_bins
        return stacked_counts(records, t0, t1, height, width, self.bins, span,
                              self.count_cutoff, self.channel_order == 'polarity_major')
