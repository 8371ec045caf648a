"""Two-channel event histogram: per-pixel counts of OFF and of ON events in the window.

Channel order is (OFF, ON), the order of ECDDP's ``generate_event_histogram`` (negative image
first), which GEP's ECDDP preprocessing (``src/pre_dse_ecddp.py``) stacks per chunk.
"""

from typing import Any, Dict, Optional

import torch

from gep_model.events.base import register_representation, Representation
from gep_model.events.records import stacked_counts
from gep_model.events.tensors import accumulate, EventTensors, Time


def check_cutoff(count_cutoff: Optional[int]) -> Optional[int]:
    """Validate a count clip: None (no clip) or a positive integer."""
    if count_cutoff is None:
        return None
    if isinstance(count_cutoff, bool) or int(count_cutoff) != count_cutoff or count_cutoff < 1:
        raise ValueError(f'count_cutoff must be None or a positive integer, got {count_cutoff!r}')
    return int(count_cutoff)


def polarity_counts(events: EventTensors) -> torch.Tensor:
    """Count events per polarity and pixel, shape (2, H, W) int64, channel 0 OFF, 1 ON."""
    plane = events.height * events.width
    index = events.p.to(torch.int64) * plane + events.pixel
    return accumulate(2 * plane, index).view(2, events.height, events.width)


def index_dtype(size: int) -> torch.dtype:
    """Return int32 for indices below `size` where it fits, else int64.

    Integer math on int32 is several times faster than on int64 on a CPU.
    """
    return torch.int32 if size <= 2**31 - 1 else torch.int64


def polarity_index(events: EventTensors) -> torch.Tensor:
    """Return each event's index p * H * W + y * W + x into the (2, H, W) counts, shape (N,)."""
    dtype = index_dtype(2 * events.height * events.width)
    index = events.p.to(dtype) * events.height
    index += events.y.to(dtype)
    index *= events.width
    index += events.x.to(dtype)
    return index


def count_index(index: torch.Tensor, size: int) -> torch.Tensor:
    """Count the occurrences of each index in [0, size), shape (size,) int32 (exact below 2^31).

    index_add_ of ones into int32: one pass over the events, a quarter of the memory and
    about half the time of bincount's int64 on a CPU, and the same on CUDA.
    """
    ones = torch.ones((), dtype=torch.int32, device=index.device).expand(index.shape)
    counts = torch.zeros(size, dtype=torch.int32, device=index.device)
    return counts.index_add_(0, index, ones)


@register_representation
class Histogram(Representation):
    """Counts of OFF and ON events per pixel, (2, H, W) float32, optionally clipped.

    Args:
        count_cutoff: Clip each count at this value (None: no clip, as ECDDP).
    """

    name = 'histogram'

    def __init__(self, count_cutoff: Optional[int] = None):
        self.count_cutoff = check_cutoff(count_cutoff)

    @property
    def channels(self) -> int:
        return 2

    def _param_values(self) -> Dict[str, Any]:
        return {'count_cutoff': self.count_cutoff}

    def render(self, events: EventTensors, t0: Time, t1: Time) -> torch.Tensor:
        plane = events.height * events.width
        counts = count_index(polarity_index(events), 2 * plane)  # (2 * H * W,) int32
        if self.count_cutoff is not None:
            counts = counts.clamp_(max=self.count_cutoff)
        return counts.to(torch.float32).view(2, events.height, events.width)

    def render_records(self, records, t0: Time, t1: Time, height: int, width: int):
        return stacked_counts(records, t0, t1, height, width, 1, 0, self.count_cutoff)
