"""Bring rendered windows to the model's input size, and sizes to the ViT patch grid.

GEP's encoders are ViTs with 14-pixel patches (DINOv2), so input sides should be multiples of
14; :func:`round_to_patch` picks such a size and :func:`fit_to_input` gets a tensor there:

* ``'resize'``: bilinear, ``align_corners=False``, antialiased when shrinking (as PIL and
  torchvision resize images); aspect ratio is not kept.
* ``'crop'``: centre crop, as GEP's evaluation transforms (``CenterCrop``); a side shorter than
  the target is padded evenly on both ends, as torchvision's ``CenterCrop`` does.
* ``'pad'``: keep the top-left origin, so pixel coordinates are unchanged: pad at the bottom and
  right, and cut any excess from the bottom and right.

Padding uses ``fill``; pass the representation's ``background`` (1.0 for the white polarity
image) so that padded pixels look like pixels that saw no event.
"""

from typing import Sequence, Tuple, Union

import torch
import torch.nn.functional as F  # noqa: N812 (the conventional alias)

FIT_MODES = ('resize', 'crop', 'pad')
PATCH_SIZE = 14

Size = Union[int, Sequence[int]]


def as_hw(size: Size) -> Tuple[int, int]:
    """Return (height, width) from an int (a square) or a (height, width) pair."""
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


def round_to_patch(size: Size, patch_size: int = PATCH_SIZE,
                   rounding: str = 'nearest') -> Tuple[int, int]:
    """Round (height, width), or one side given as an int, to multiples of patch_size.

    Args:
        size: (height, width), or an int for a square.
        patch_size: The multiple (14 for GEP's DINOv2 ViTs).
        rounding: 'nearest' (halves round up), 'down' or 'up'.

    Returns:
        (height, width), each a positive multiple of patch_size (at least one patch).
    """
    if patch_size < 1:
        raise ValueError(f'patch_size must be positive, got {patch_size}')
    if rounding not in ('nearest', 'down', 'up'):
        raise ValueError(f"rounding must be 'nearest', 'down' or 'up', got {rounding!r}")
    sides = []
    for side in as_hw(size):
        if side < 1:
            raise ValueError(f'sizes must be positive, got {size}')
        if rounding == 'down':
            patches = side // patch_size
        elif rounding == 'up':
            patches = -(-side // patch_size)
        else:
            patches = (2 * side + patch_size) // (2 * patch_size)
        sides.append(max(patches, 1) * patch_size)
    return sides[0], sides[1]


def _crop_or_pad(image: torch.Tensor, height: int, width: int, centred: bool,
                 fill: float) -> torch.Tensor:
    """Cut or pad the last two dimensions to height x width, centred or from the top-left."""
    in_height, in_width = image.shape[-2:]
    # Offsets of the output window in the input; negative means padding on that side.
    top = (in_height - height) // 2 if centred else 0
    left = (in_width - width) // 2 if centred else 0
    kept = image[..., max(top, 0):max(top, 0) + height, max(left, 0):max(left, 0) + width]
    pad_top, pad_left = max(-top, 0), max(-left, 0)
    pad_bottom = height - kept.shape[-2] - pad_top
    pad_right = width - kept.shape[-1] - pad_left
    if pad_top or pad_left or pad_bottom or pad_right:
        kept = F.pad(kept, (pad_left, pad_right, pad_top, pad_bottom), value=fill)
    return kept


def fit_to_input(tensor: torch.Tensor, size: Size, mode: str = 'resize',
                 fill: float = 0.0) -> torch.Tensor:
    """Bring a (C, H, W) or (B, C, H, W) tensor to spatial size (height, width).

    Args:
        tensor: (C, H, W) or (B, C, H, W) floating point.
        size: Target (height, width), or an int for a square.
        mode: 'resize', 'crop' (centred) or 'pad' (top-left anchored); see the module notes.
        fill: Value of padded pixels (crop and pad modes).

    Returns:
        The tensor with its last two dimensions equal to size, same leading dimensions.
    """
    if mode not in FIT_MODES:
        raise ValueError(f'mode must be one of {FIT_MODES}, got {mode!r}')
    if tensor.dim() not in (3, 4):
        raise ValueError(f'expected (C, H, W) or (B, C, H, W), got shape {tuple(tensor.shape)}')
    height, width = as_hw(size)
    if height < 1 or width < 1:
        raise ValueError(f'sizes must be positive, got {size}')
    if tuple(tensor.shape[-2:]) == (height, width):
        return tensor
    if mode != 'resize':
        return _crop_or_pad(tensor, height, width, mode == 'crop', fill)
    batch = tensor if tensor.dim() == 4 else tensor[None]  # (B, C, H, W)
    shrinking = height < batch.shape[-2] or width < batch.shape[-1]
    resized = F.interpolate(batch, size=(height, width), mode='bilinear', align_corners=False,
                            antialias=shrinking)
    return resized if tensor.dim() == 4 else resized[0]
