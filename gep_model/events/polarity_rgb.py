"""GEP's event image: ON events red and OFF events blue on white, percentile-normalised.

This is the rendering GEP pretrains and fine-tunes on, ``accumulate_to_rgb`` in the authors'
``src/utils.py``, reimplemented in torch:

1. count ON and OFF events per pixel (two float32 images);
2. normalise each count image on its own: clip at the ``percentile`` (default 90, the value
   ``src/pre_dse.py`` uses for DSEC) of its *nonzero* counts and divide by that threshold, so a
   pixel at or above it gets 1; an image without events stays 0;
3. per pixel the dominant polarity wins: ON when ``on >= off`` after normalisation (ties go to
   ON), else OFF; the loser is not drawn;
4. on a white image, an ON intensity i paints (1, 1 - i, 1 - i) (red), an OFF intensity paints
   (1 - i, 1 - i, 1) (blue).

The output is (3, H, W) float32 in [0, 1] with channels (R, G, B); the authors quantise to
uint8 when saving PNGs, which this leaves to the caller. The percentile follows numpy's default
(linear) method step by step in float32, as numpy does on the authors' float32 counts, so the
image matches theirs to the bit.

Other GEP preprocessing scripts use other percentiles (99 in ``utils.py``'s default, N-ImageNet
and MVSEC, 95 for DDD17), and the DSEC script writes the RGB array with ``cv2.imwrite`` (which
takes it as BGR) while the datasets read PNGs with PIL, so the DSEC images GEP trained on have
ON blue and OFF red. ``channel_order='bgr'`` reproduces those images.
"""

from typing import Any, Dict

import torch

from gep_model.events.base import register_representation, Representation
from gep_model.events.histogram import polarity_counts
from gep_model.events.tensors import EventTensors, Time

CHANNEL_ORDERS = ('rgb', 'bgr')


def nonzero_percentile(counts: torch.Tensor, percentile: float) -> torch.Tensor:
    """Return the percentile of the nonzero entries of each row, as numpy.percentile computes it.

    Args:
        counts: (R, N) whole counts >= 0, any dtype (event counts per pixel).
        percentile: In [0, 100].

    Returns:
        (R,) float32 thresholds; 0 for a row without nonzero entries.

    numpy's linear method: virtual index v = (n - 1) * q in float64 over the n sorted values,
    gamma = v - floor(v), then in float32 a + (b - a) * gamma, or for gamma >= 0.5
    b - (b - a) * (1 - gamma). The two sorted values a and b are found without sorting: a
    histogram of the counts (one bincount, as wide as the largest count) and its running sum
    give the value at any rank among the nonzero entries.
    """
    rows, size = counts.shape
    ints = counts.to(torch.int32)  # bincount is twice as fast on int32 as on int64 (CPU)
    bins = int(ints.max()) + 1 if ints.numel() else 1  # one host read, even on a GPU
    offsets = torch.arange(rows, dtype=torch.int32, device=ints.device)[:, None] * bins
    hist = torch.bincount((ints + offsets).view(-1), minlength=rows * bins).view(rows, bins)
    nonzero = size - hist[:, 0]  # (R,)
    below_or_at = hist[:, 1:].cumsum(1)  # (R, bins - 1): nonzero entries <= 1, 2, ...
    virtual = (nonzero - 1).clamp(min=0).to(torch.float64) * (percentile / 100.0)
    below = torch.floor(virtual)
    gamma = virtual - below  # (R,) float64
    low = below.to(torch.int64)  # rank of a among the nonzero entries
    high = torch.minimum(low + 1, (nonzero - 1).clamp(min=0))  # v >= n - 1: a twice
    ranks = torch.stack((low, high), dim=1)  # (R, 2)
    # The value at rank r is 1 + the number of values whose running count stays <= r.
    ab = (torch.searchsorted(below_or_at, ranks, right=True) + 1).to(torch.float32)
    a, b = ab[:, 0], ab[:, 1]
    diff = b - a  # (R,) float32
    from_low = a + diff * gamma.to(torch.float32)
    from_high = b - diff * (1 - gamma).to(torch.float32)
    threshold = torch.where(gamma >= 0.5, from_high, from_low)
    return torch.where(nonzero > 0, threshold, torch.zeros_like(threshold))


def normalise_counts(counts: torch.Tensor, percentile: float) -> torch.Tensor:
    """Clip each count image at its nonzero percentile, divide by it; (2, H, W) float32."""
    flat = counts.reshape(counts.shape[0], -1)  # (2, H * W)
    threshold = nonzero_percentile(flat, percentile)[:, None]  # (2, 1)
    # An empty image has threshold 0; divide by 1 there so it stays all zeros.
    safe = torch.where(threshold > 0, threshold, torch.ones_like(threshold))
    flat = flat.to(torch.float32)
    return (torch.minimum(flat, safe) / safe).view(counts.shape)


def polarity_image(on: torch.Tensor, off: torch.Tensor) -> torch.Tensor:
    """Draw normalised ON / OFF intensities (H, W) on white, dominant polarity only; (3, H, W).

    Red ink (ON) keeps R and removes G and B; blue ink (OFF) keeps B and removes R and G. One
    of the two is drawn per pixel, so G is 1 - ink, R is 1 where ON wins and G elsewhere, B
    the other way round: the same float32 values as subtracting both inks from white.
    """
    on_wins = on >= off
    green = 1 - torch.where(on_wins, on, off)
    white = torch.ones((), dtype=green.dtype, device=green.device)
    return torch.stack((torch.where(on_wins, white, green), green,
                        torch.where(on_wins, green, white)))


@register_representation
class PolarityRGB(Representation):
    """GEP's polarity image, (3, H, W) float32 in [0, 1], white where no event fired.

    Args:
        percentile: Percentile of the nonzero counts that maps to full intensity (0..100].
        channel_order: 'rgb' (ON red, as the authors' function returns) or 'bgr' (as GEP's
            DSEC training PNGs hold it).
    """

    name = 'polarity_rgb'
    background = 1.0

    def __init__(self, percentile: float = 90.0, channel_order: str = 'rgb'):
        percentile = float(percentile)
        if not 0.0 <= percentile <= 100.0:
            raise ValueError(f'percentile must be in [0, 100], got {percentile}')
        if channel_order not in CHANNEL_ORDERS:
            raise ValueError(f'channel_order must be one of {CHANNEL_ORDERS}, '
                             f'got {channel_order!r}')
        self.percentile = percentile
        self.channel_order = channel_order

    @property
    def channels(self) -> int:
        return 3

    def _param_values(self) -> Dict[str, Any]:
        return {'percentile': self.percentile, 'channel_order': self.channel_order}

    def render(self, events: EventTensors, t0: Time, t1: Time) -> torch.Tensor:
        counts = polarity_counts(events)  # (2, H, W) int64: OFF, ON
        off, on = normalise_counts(counts, self.percentile)
        image = polarity_image(on, off)  # (3, H, W) R, G, B
        return image.flip(0) if self.channel_order == 'bgr' else image
