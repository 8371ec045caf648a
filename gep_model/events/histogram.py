"""Two-channel event histogram: per-pixel counts of OFF and of ON events in the window.

Channel order is (OFF, ON), the order of ECDDP's ``generate_event_histogram`` (negative image
first), which GEP's ECDDP preprocessing (``src/pre_dse_ecddp.py``) stacks per chunk.
"""

from typing import Any, Dict, Optional

import torch

from gep_model.events.base import register_representation, Representation
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
        counts = polarity_counts(events)  # (2, H, W)
        if self.count_cutoff is not None:
            counts = counts.clamp_(max=self.count_cutoff)
        return counts.to(torch.float32)
