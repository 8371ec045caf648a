"""GEP stage 1's paired augmentation: one random draw per sample, applied to both inputs.

As the authors' training transforms for stage 1 (src/config.py:1016-1021 for DSEC,
src/dataset.py:1771-1805 and 2065-2168): a red/blue swap of the event image (its two
polarity colours; the frame is untouched), a horizontal flip of both, and a random resized
crop (torchvision's parameter draw: scale of the area, log-uniform aspect ratio, ten tries,
then a centre crop) taken at the SAME place in the event image and the frame and resized
back to the input size with bicubic interpolation. Stage 1 compares the two token by token,
so event image and frame must stay pixel-aligned through all of it.

Differences from the authors': the draw uses torch's global generator per sample (the
training engine seeds and restores it), and the event image is augmented before the
encoder normalises it, where the authors normalise first (the swap then exchanges the
normalised channels); with the DSEC statistics the red and blue means differ by 0.007.
"""

import math

import torch
import torch.nn.functional as F  # noqa: N812 (the conventional alias)

AUGMENT_DEFAULTS = {'swap_polarity': 0.5, 'flip': 0.5, 'crop_scale': (0.25, 1.0),
                    'crop_ratio': (3 / 4, 4 / 3)}


def augment_params(augment):
    """Return the augmentation settings with defaults; ValueError naming a bad key or value.

    augment: None or False for none at all, True or a dict of AUGMENT_DEFAULTS' keys;
    crop_scale null turns the crop off.
    """
    if augment in (None, False):
        return None
    augment = {} if augment is True else dict(augment)
    unknown = sorted(set(augment) - set(AUGMENT_DEFAULTS))
    if unknown:
        raise ValueError(f'augment.{unknown[0]}: no such setting '
                         f'({", ".join(AUGMENT_DEFAULTS)})')
    out = {**AUGMENT_DEFAULTS, **augment}
    for key in ('swap_polarity', 'flip'):
        if not 0.0 <= float(out[key]) <= 1.0:
            raise ValueError(f'augment.{key}: a probability within [0, 1], got {out[key]}')
        out[key] = float(out[key])
    for key in ('crop_scale', 'crop_ratio'):
        if out[key] is None:
            continue
        lo, hi = (float(v) for v in out[key])
        if not 0 < lo <= hi or (key == 'crop_scale' and hi > 1):
            raise ValueError(f'augment.{key}: [low, high] with 0 < low <= high'
                             f'{" <= 1" if key == "crop_scale" else ""}, got {out[key]}')
        out[key] = (lo, hi)
    return out


def crop_box(height, width, scale, ratio, generator=None):
    """Draw (top, left, h, w) as torchvision's RandomResizedCrop.get_params does."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * float(torch.empty(1).uniform_(scale[0], scale[1], generator=generator))
        aspect = math.exp(float(torch.empty(1).uniform_(*log_ratio, generator=generator)))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def _resized_crop(x, box, size):
    top, left, h, w = box
    crop = x[..., top:top + h, left:left + w]
    return F.interpolate(crop[None], size=size, mode='bicubic', align_corners=False,
                         antialias=True)[0]


def paired_augment(events, images, params, generator=None):
    """Augment a batch of event images (B, C, H, W) and frames (B, 3, H, W) in pairs.

    params: `augment_params` output (None returns the inputs). The polarity swap exchanges
    channels 0 and 2 of a 3-channel event image (GEP's red/blue polarity rendering) and is
    skipped for other representations. Returns (events, images), shapes kept.
    """
    if params is None:
        return events, images
    size = tuple(events.shape[-2:])
    out_events, out_images = [], []
    for ev, im in zip(events, images):
        swap = float(torch.rand(1, generator=generator)) < params['swap_polarity']
        if swap and ev.shape[0] == 3:
            ev = ev[[2, 1, 0]]
        if float(torch.rand(1, generator=generator)) < params['flip']:
            ev, im = ev.flip(-1), im.flip(-1)
        if params['crop_scale'] is not None:
            box = crop_box(*size, params['crop_scale'], params['crop_ratio'], generator)
            ev, im = _resized_crop(ev, box, size), _resized_crop(im, box, size)
        out_events.append(ev)
        out_images.append(im)
    return torch.stack(out_events), torch.stack(out_images)
