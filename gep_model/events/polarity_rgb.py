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

How, without sorting and without passes over whole images but the one that draws: the
counts into int32, the histogram of the nonzero counts from the events' own counts (no pass
over the images), the two values around the percentile from its running sum
(`histogram_percentile`), then the image. In CPU memory three compiled passes do it
(`gep_model.events._kernels`: counts, histogram, image; the percentile in numpy); the
pipeline's event records take two (`record_polarity`: the counts, histogrammed as they
grow, and the percentile in C; then `draw_resize`, which draws the image row by row as the
resize to the model's input reads it, see `PolarityRGB.render_fitted`); on other devices
torch operations (`render_torch`: index_add_, bincount, float32 arithmetic without masks in
`draw_polarity`), which give the same bits.

Other GEP preprocessing scripts use other percentiles (99 in ``utils.py``'s default, N-ImageNet
and MVSEC, 95 for DDD17), and the DSEC script writes the RGB array with ``cv2.imwrite`` (which
takes it as BGR) while the datasets read PNGs with PIL, so the DSEC images GEP trained on have
ON blue and OFF red. ``channel_order='bgr'`` reproduces those images.
"""

import math
from typing import Any, Dict

import numpy as np
import torch

from gep_model.events.base import register_representation, Representation
from gep_model.events.fit import as_hw, compiled_resize, resize_call, Size
from gep_model.events.histogram import count_index, polarity_index
from gep_model.events.kernels import kernels
from gep_model.events.records import host_records, window_bounds
from gep_model.events.tensors import DeviceLike, EventTensors, Time

CHANNEL_ORDERS = ('rgb', 'bgr')


def nonzero_percentile(counts: torch.Tensor, percentile: float) -> torch.Tensor:
    """Return the percentile of the nonzero entries of each row, as numpy.percentile computes it.

    Args:
        counts: (R, N) whole counts >= 0, any dtype (event counts per pixel).
        percentile: In [0, 100].

    Returns:
        (R,) float32 thresholds; 0 for a row without nonzero entries.

    The values are found without sorting, from a histogram of the counts (one bincount, as
    wide as the largest count); see `histogram_percentile`.
    """
    rows, size = counts.shape
    ints = counts.to(torch.int32)  # bincount is twice as fast on int32 as on int64 (CPU)
    bins = int(ints.max()) + 1 if ints.numel() else 1  # one host read, even on a GPU
    offsets = torch.arange(rows, dtype=torch.int32, device=ints.device)[:, None] * bins
    hist = torch.bincount((ints + offsets).view(-1), minlength=rows * bins).view(rows, bins)
    return histogram_percentile(hist, percentile)


def histogram_percentile(hist: torch.Tensor, percentile: float) -> torch.Tensor:
    """Return the percentile of the nonzero values that a histogram counts, row by row.

    Args:
        hist: (R, B) integers, hist[r, k] = how many entries of row r equal k (column 0, the
            zeros, is not read).
        percentile: In [0, 100].

    Returns:
        (R,) float32, as numpy.percentile on the nonzero entries; 0 for a row without any.

    numpy's linear method: virtual index v = (n - 1) * q in float64 over the n sorted values,
    gamma = v - floor(v), then in float32 a + (b - a) * gamma, or for gamma >= 0.5
    b - (b - a) * (1 - gamma). The two sorted values a and b come from the running sum of the
    histogram: the value at rank r is 1 + the number of values whose running count stays <= r.
    """
    below_or_at = hist[:, 1:].cumsum(1)  # (R, B - 1): nonzero entries <= 1, 2, ...
    nonzero = below_or_at[:, -1] if below_or_at.shape[1] else hist[:, 0] * 0  # (R,)
    virtual = (nonzero - 1).clamp(min=0).to(torch.float64) * (percentile / 100.0)
    below = torch.floor(virtual)
    gamma = virtual - below  # (R,) float64
    low = below.to(torch.int64)  # rank of a among the nonzero entries
    high = torch.minimum(low + 1, (nonzero - 1).clamp(min=0))  # v >= n - 1: a twice
    ranks = torch.stack((low, high), dim=1).to(below_or_at.dtype)  # (R, 2)
    ab = (torch.searchsorted(below_or_at, ranks, right=True) + 1).to(torch.float32)
    a, b = ab[:, 0], ab[:, 1]
    diff = b - a  # (R,) float32
    from_low = a + diff * gamma.to(torch.float32)
    from_high = b - diff * (1 - gamma).to(torch.float32)
    threshold = torch.where(gamma >= 0.5, from_high, from_low)
    return torch.where(nonzero > 0, threshold, torch.zeros_like(threshold))


def event_count_histogram(counts: torch.Tensor, index: torch.Tensor,
                          polarity: torch.Tensor) -> torch.Tensor:
    """Histogram of the nonzero counts of the two count images, from the events alone.

    Args:
        counts: (2 * H * W,) int32 event counts per (polarity, pixel).
        index: (N,) each event's index into counts.
        polarity: (N,) bool, True = ON (row 1).

    Returns:
        (2, B) int64, [r, k] = the number of pixels of row r that counted k events (k >= 1).

    A pixel that counted k events is seen by k events, so the events' own counts, histogrammed
    per polarity, hold k times the number of such pixels: a pass over the N events and a
    division, instead of passes over every pixel of both images.
    """
    per_event = counts.index_select(0, index)  # (N,) the count of each event's pixel
    bins = int(per_event.max()) + 1 if per_event.numel() else 1  # one host read
    seen = torch.bincount(polarity.to(per_event.dtype) * bins + per_event, minlength=2 * bins)
    seen = seen.view(2, bins)
    ks = torch.arange(bins, device=seen.device).clamp_(min=1)
    return torch.div(seen, ks, rounding_mode='floor')


def count_thresholds(counts: torch.Tensor, index: torch.Tensor, polarity: torch.Tensor,
                     percentile: float) -> torch.Tensor:
    """Return the percentile of the nonzero counts of the OFF and ON images, (2,) float32.

    `event_count_histogram` then `histogram_percentile`, on the counts' device: the path of
    tensors off the CPU (`host_counts` is the CPU's, with the same results).
    """
    return histogram_percentile(event_count_histogram(counts, index, polarity), percentile)


def host_counts(events: EventTensors, percentile: float):
    """Count events in CPU memory and find the thresholds, by the compiled kernels.

    Returns (counts, bins, thresholds): (2 * H * W,) int32 counts per (polarity, pixel), as
    `count_index(polarity_index(events))`; one more than the largest count; the (2,) float32
    thresholds of `count_thresholds`. A pass over the events counts (and finds the largest
    count), a second histograms the counts (over the events' own counts, or over the pixels
    for dense windows: `_dense`), and the percentile's few steps run in numpy
    (`_host_thresholds`), where a few dozen torch operations on arrays of a few elements
    would cost more than the passes.
    """
    plane = events.height * events.width
    x = np.ascontiguousarray(events.x.numpy(), np.int64)
    y = np.ascontiguousarray(events.y.numpy(), np.int64)
    p = np.ascontiguousarray(events.p.numpy()).view(np.uint8)
    counts = np.empty(2 * plane, np.int32)
    index = None if _dense(x.size, plane) else np.empty(x.size, np.int32)
    bins = kernels.polarity_counts(x, y, p, events.width, plane, counts, index) + 1
    return _counted(counts, bins, index, p, percentile)


# Above this many events per count (pixel and polarity) the histogram of the counts is taken
# over the pixels, a sequential pass, instead of over the events' own counts, a gather that
# misses the cache once the counts outgrow it: measured 0.36 against 1.1 ms at 640x480 with
# 300k events (0.49 events a count), 0.10 against 0.09 ms at 346x260 with 50k (0.28).
PIXEL_PASS_ABOVE = 0.3


def _dense(n, plane):
    """Whether up to n events on a plane of pixels take the histogram over the pixels."""
    return n > PIXEL_PASS_ABOVE * 2 * plane


def _counted(counts, bins, index, p, percentile):
    """host_counts' result from the counts and each counted event's index and polarity.

    index and p are None for a dense window (`_dense`): the histogram is then taken over the
    pixels.
    """
    if index is None:
        hist = np.zeros(2 * bins, np.int64)
        kernels.pixel_histogram(counts, bins, hist)
        hist = hist.reshape(2, bins)
        hist[:, 0] = 0  # the empty pixels, which event_count_histogram does not see
    else:
        seen = np.zeros(2 * bins, np.int64)
        kernels.count_histogram(index, p, counts, bins, seen)
        hist = seen.reshape(2, bins) // np.maximum(np.arange(bins), 1)
    return torch.from_numpy(counts), bins, torch.from_numpy(_host_thresholds(hist, percentile))


def record_counts(events: np.ndarray, t0: Time, t1: Time, height: int, width: int,
                  percentile: float):
    """host_counts of the window [t0, t1] of event records, as window_events cuts it.

    One compiled call (`record_polarity`): a pass over the records counts the events on the
    sensor and in the window (the others dropped, as window_events drops them) and
    histograms the counts as they grow, then the thresholds follow from the histogram as
    `_host_thresholds` computes them, without converting the records to tensors first.
    """
    lo, hi = window_bounds(t0, t1)
    counts = np.empty(2 * height * width, np.int32)
    thresholds = np.empty(2, np.float32)
    bins = kernels.record_polarity(np.ascontiguousarray(events), lo, hi, width, height,
                                   percentile, counts, thresholds)
    return torch.from_numpy(counts), bins, torch.from_numpy(thresholds)


def _host_thresholds(hist: np.ndarray, percentile: float) -> np.ndarray:
    """`histogram_percentile` of a (R, B) numpy histogram, step by step in the same types."""
    out = np.zeros(hist.shape[0], np.float32)
    for row, counts in enumerate(hist):
        below_or_at = np.cumsum(counts[1:])
        nonzero = int(below_or_at[-1]) if below_or_at.size else 0
        if not nonzero:
            continue
        virtual = float(nonzero - 1) * (percentile / 100.0)  # float64
        below = math.floor(virtual)
        gamma = virtual - below
        low, high = below, min(below + 1, nonzero - 1)
        a, b = (np.float32(np.searchsorted(below_or_at, rank, side='right') + 1)
                for rank in (low, high))
        diff = b - a  # float32
        if gamma >= 0.5:
            out[row] = b - diff * np.float32(1 - gamma)
        else:
            out[row] = a + diff * np.float32(gamma)
    return out


def draw_polarity(image: torch.Tensor) -> torch.Tensor:
    """Draw the dominant polarity of (3, P) float32 in place, without masks.

    On entry row 0 holds the normalised OFF intensities and row 2 the ON ones; on return the
    rows are R, G, B with the values of the masked drawing (`reference.polarity_rgb`). The
    drawn ink is m = max(on, off) (ON wins ties), so G = 1 - m. off_wins = sign(m - on) is
    exactly 1.0 where OFF wins and 0.0 elsewhere (m - on >= 0), and where OFF wins m is off:
    R = 1 - m * off_wins is 1 - off there and exactly 1 elsewhere, B = 1 - m * (1 -
    off_wins) likewise for ON. m times 0 or 1 is exact, so these are the same float32
    values; arithmetic is several times faster than comparisons and torch.where on a CPU,
    and three rows hold everything.
    """
    red, green, blue = image
    one = torch.ones((), dtype=image.dtype, device=image.device)
    torch.maximum(red, blue, out=green)  # m
    torch.sub(green, blue, out=blue).sign_()  # off_wins
    # 1 + (-1 * m) * w: the negation is exact, so this is 1 - m * w.
    torch.addcmul(one, green, blue, value=-1, out=red)
    torch.addcmul(one, green, torch.sub(one, blue, out=blue), value=-1, out=blue)
    torch.sub(one, green, out=green)
    return image


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

    def render_records(self, records, t0: Time, t1: Time, height: int, width: int):
        counted = record_counts(records, t0, t1, height, width, self.percentile)
        return self._draw(*counted, height, width)

    def render_fitted(self, events, t0: Time, t1: Time, height: int, width: int, size: Size,
                      device: DeviceLike = None) -> torch.Tensor:
        """Render the polarity image at size; records in CPU memory never draw it whole.

        Where fit_to_input would take the compiled resize, each row of the image is drawn
        as the resize reads it (`draw_resize`): the same bits, without writing and reading
        back the full-size image.
        """
        out_h, out_w = as_hw(size)
        fused = None
        if host_records(events, device) and int(height) > 0 and int(width) > 0:
            height, width = int(height), int(width)
            fused = compiled_resize(height, width, out_h, out_w)
        if fused is None:
            return super().render_fitted(events, t0, t1, height, width, size, device)
        counts, bins, threshold = record_counts(events, t0, t1, height, width, self.percentile)
        out, args = resize_call(3, height, width, out_h, out_w, fused)
        off, on = threshold.tolist()
        kernels.draw_resize(counts.numpy(), bins, off, on, self.channel_order == 'bgr', *args)
        return out

    def render(self, events: EventTensors, t0: Time, t1: Time) -> torch.Tensor:
        if events.x.device.type == 'cpu':
            return self._draw(*host_counts(events, self.percentile), events.height,
                              events.width)
        image = self.render_torch(events)
        return image.flip(0) if self.channel_order == 'bgr' else image

    def _draw(self, counts, bins, threshold, height, width):
        image = torch.empty((3, height, width), dtype=torch.float32)
        kernels.draw_polarity(counts.numpy(), height * width, bins, float(threshold[0]),
                              float(threshold[1]), image.numpy())
        return image.flip(0) if self.channel_order == 'bgr' else image

    def render_torch(self, events: EventTensors) -> torch.Tensor:
        """Draw the (R, G, B) image by torch operations on the events' device (off the CPU)."""
        height, width = events.height, events.width
        index = polarity_index(events)  # (N,) into the OFF then ON count images
        counts = count_index(index, 2 * height * width)  # (2 * H * W,) int32
        threshold = count_thresholds(counts, index, events.p, self.percentile)  # (2,) OFF, ON
        # An empty image has threshold 0; divide by 1 there so it stays all zeros.
        safe = torch.where(threshold > 0, threshold, torch.ones_like(threshold))[:, None]
        image = torch.empty((3, height * width), dtype=torch.float32, device=counts.device)
        intensity = image[0::2]  # (2, H * W) rows R and B: OFF and ON, normalised
        torch.minimum(counts.view(2, -1), safe, out=intensity).div_(safe)  # int32 -> float32
        return draw_polarity(image).view(3, height, width)  # R, G, B
