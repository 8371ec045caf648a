"""Fine-tuning augmentation: one geometric transform per sequence, on events and labels alike.

The authors' recipes, on the cached windows (already at the model's input size H x W):
- `scale_crop` (segmentation, src/config.py:455-468): horizontal flip (p 0.5), a resize by a
  factor drawn from `scale` (0.5 to 2.0), padding to at least H x W, and a random H x W crop
  retried up to 10 times until no class covers more than `cat_max_ratio` (0.75) of the
  labelled pixels, else the centre crop (mmseg's RandomCrop, src/dataset.py:2170);
- `resized_crop` (depth, src/config.py:702-708): a crop of `scale` (0.5 to 1.0) of the area at
  an aspect ratio within `ratio` (0.9 to 1.1), resized to H x W, and a horizontal flip.
`swap_polarity` (p 0.5 for segmentation, src/config.py:458) exchanges the red and blue
channels of GEP's polarity image, i.e. ON and OFF (other representations are left alone).
Without an `augment` section the segmentation recipe applies; `kind: none` turns it off.

Every window of a sequence gets the same transform (the temporal backbone sees a consistent
scene), and the events, frames, depth and labels of a window the same geometry. Events and
frames resample bilinearly; labels and depth take the nearest pixel, so that no class or depth
is invented at edges and unknown depth (NaN) stays unknown. Padding is "no events" for the
events (white for the polarity image, 0 otherwise), 0 for frames, 255 (ignored) for labels and
NaN for depth. Randomness comes from torch's global generator, which checkpoints restore.
"""

import math

import torch
import torch.nn.functional as F

KINDS = ('scale_crop', 'resized_crop', 'none')
DEFAULTS = {
    'scale_crop': {'flip': 0.5, 'scale': (0.5, 2.0), 'cat_max_ratio': 0.75,
                   'swap_polarity': 0.5},
    'resized_crop': {'flip': 0.5, 'scale': (0.5, 1.0), 'ratio': (0.9, 1.1),
                     'swap_polarity': 0.0},
    'none': {},
}
IGNORE = 255


class AugmentError(ValueError):
    """An augmentation setting that cannot work; the message names the key."""


def augment_settings(spec):
    """Return (kind, settings) from a config's `augment` section (None: the seg recipe)."""
    spec = dict(spec or {'kind': 'scale_crop'})
    kind = spec.pop('kind', 'scale_crop')
    if kind not in KINDS:
        raise AugmentError(f'augment.kind: {kind!r} is not one of {", ".join(KINDS)}')
    settings = dict(DEFAULTS[kind])
    for key, value in spec.items():
        if key not in settings:
            raise AugmentError(f'augment.{key}: no such setting for {kind} '
                               f'({", ".join(settings) or "none"})')
        settings[key] = tuple(value) if isinstance(value, list) else value
    for key in ('scale', 'ratio'):
        if key in settings:
            low, high = settings[key]
            if not 0 < low <= high:
                raise AugmentError(f'augment.{key}: [{low}, {high}] must satisfy 0 < low <= high')
    for key in ('flip', 'swap_polarity'):
        if key in settings and not 0 <= settings[key] <= 1:
            raise AugmentError(f'augment.{key}: {settings[key]} is not a probability')
    return kind, settings


def _uniform(low, high):
    return low + (high - low) * float(torch.rand(()))


def _resize(x, size, nearest):
    """Resize (N, C, h, w) to size; nearest for labels and depth, bilinear otherwise."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if nearest:
        return F.interpolate(x, size=size, mode='nearest')
    return F.interpolate(x, size=size, mode='bilinear', align_corners=False)


def _dominant_ratio(labels):
    """Share of the labelled pixels that the most frequent class takes (0 when none)."""
    known = labels[labels != IGNORE]
    if known.numel() == 0:
        return 0.0
    return float(torch.bincount(known.flatten()).max()) / known.numel()


class SequenceAugment:
    """Apply one random geometric transform per sequence; see the module docstring."""

    def __init__(self, spec, event_fill=0.0, polarity_image=True):
        self.kind, self.settings = augment_settings(spec)
        self.event_fill = float(event_fill)
        self.polarity_image = polarity_image  # swap_polarity only means ON <-> OFF there

    def __call__(self, batch):
        """Augment a batch of (B, T, ...) tensors (events, images, depth, labels) in place."""
        if self.kind == 'none':
            return batch
        for i in range(batch['events'].shape[0]):
            item = {k: batch[k][i] for k in ('events', 'images', 'depth', 'labels') if k in batch}
            item = self.sequence(item)
            for key, value in item.items():
                batch[key][i] = value
        return batch

    def sequence(self, item):
        """Augment one sequence: events, images (T, C, H, W), depth and labels (T, H, W)."""
        s = self.settings
        size = tuple(item['events'].shape[-2:])
        if self.polarity_image and s.get('swap_polarity') and \
                float(torch.rand(())) < s['swap_polarity']:
            item['events'] = item['events'][:, [2, 1, 0]]
        if self.kind == 'scale_crop':
            item = self._scale_crop(item, size)
        else:
            item = self._resized_crop(item, size)
        if float(torch.rand(())) < s['flip']:
            item = {k: v.flip(-1) for k, v in item.items()}
        return item

    def _scale_crop(self, item, size):
        h, w = size
        factor = _uniform(*self.settings['scale'])
        scaled = (math.ceil(h * factor), math.ceil(w * factor))
        item = self._apply(item, lambda x, nearest, fill: _pad_to(
            _resize(x, scaled, nearest), size, fill))
        big_h, big_w = item['events'].shape[-2:]
        labels = item.get('labels')
        top = left = None
        for _ in range(10):  # mmseg: retry while one class dominates the crop
            y = int(torch.randint(0, big_h - h + 1, ()))
            x = int(torch.randint(0, big_w - w + 1, ()))
            if labels is None or self.settings['cat_max_ratio'] >= 1:
                top, left = y, x
                break
            if _dominant_ratio(labels[..., y:y + h, x:x + w]) < self.settings['cat_max_ratio']:
                top, left = y, x
                break
        if top is None:
            top, left = (big_h - h) // 2, (big_w - w) // 2
        return {k: v[..., top:top + h, left:left + w] for k, v in item.items()}

    def _resized_crop(self, item, size):
        h, w = size
        area = h * w
        lo, hi = (math.log(r) for r in self.settings['ratio'])
        box = None
        for _ in range(10):  # torchvision's RandomResizedCrop parameters
            target = area * _uniform(*self.settings['scale'])
            aspect = math.exp(_uniform(lo, hi))
            cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < cw <= w and 0 < ch <= h:
                box = (int(torch.randint(0, h - ch + 1, ())),
                       int(torch.randint(0, w - cw + 1, ())), ch, cw)
                break
        if box is None:
            box = (0, 0, h, w)
        top, left, ch, cw = box
        return self._apply(item, lambda x, nearest, fill: _resize(
            x[..., top:top + ch, left:left + cw], size, nearest))

    def _apply(self, item, fn):
        out = {}
        for key, value in item.items():
            if key == 'events':
                out[key] = fn(value, False, self.event_fill)
            elif key == 'images':
                out[key] = fn(value, False, 0.0)
            elif key == 'labels':
                out[key] = fn(value[:, None].float(), True, float(IGNORE))[:, 0].to(value.dtype)
            else:  # depth
                out[key] = fn(value[:, None], True, math.nan)[:, 0]
        return out


def _pad_to(x, size, fill):
    """Pad (N, C, h, w) on the bottom and right up to at least size with fill."""
    pad_h, pad_w = max(size[0] - x.shape[-2], 0), max(size[1] - x.shape[-1], 0)
    if not (pad_h or pad_w):
        return x
    return F.pad(x, (0, pad_w, 0, pad_h), value=fill)


def flip_outputs(out):
    """Undo a horizontal flip on the dense outputs of a model run on flipped input."""
    return {k: (v.flip(-1) if k in ('depth', 'log_depth', 'seg_logits') else v)
            for k, v in out.items()}
