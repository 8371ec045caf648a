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

import functools
from typing import Optional, Sequence, Tuple, Union

import numpy as np
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
    fused = _compiled_arithmetic(batch, height, width)
    if fused is not None:
        resized = resize_antialiased(batch, height, width, fused)
    else:
        shrinking = height < batch.shape[-2] or width < batch.shape[-1]
        resized = F.interpolate(batch, size=(height, width), mode='bilinear',
                                align_corners=False, antialias=shrinking)
    return resized if tensor.dim() == 4 else resized[0]


# The compiled antialiased resize: torch's own taps and weights, read from torch, and
# torch's arithmetic, checked on a random image, once per pair of sizes; the same bits as
# F.interpolate(mode='bilinear', antialias=True) for float32 on the CPU, in about a quarter
# of its time (two tight passes instead of torch's generic strided loops). Where the check fails,
# torch resizes.


@functools.lru_cache(maxsize=64)
def antialias_taps(size_in: int, size_out: int):
    """Return (start, count, weights) of torch's antialiased bilinear taps along one axis.

    Output k is sum(weights[k, j] * input[start[k] + j] for j < count[k]). Read from torch:
    resizing the identity along one axis puts each output's weights in its column.
    """
    eye = torch.eye(size_in, dtype=torch.float32)[None, None]
    columns = F.interpolate(eye, size=(size_in, size_out), mode='bilinear',
                            align_corners=False, antialias=True)[0, 0].numpy()
    nonzero = columns != 0
    start = nonzero.argmax(axis=0)
    count = size_in - nonzero[::-1].argmax(axis=0) - start
    weights = np.zeros((size_out, int(count.max())), np.float32)
    for k in range(size_out):
        weights[k, :count[k]] = columns[start[k]:start[k] + count[k], k]
    return start.astype(np.int32), count.astype(np.int32), weights


def resize_call(channels: int, in_h: int, in_w: int, height: int, width: int, fused: bool):
    """Return the output and the arguments of a compiled resize (`resize_aa`, `draw_resize`).

    Returns (out, args): the (channels, height, width) float32 output, and what the kernels
    take after their source (tmp, out, the sizes, torch's taps and `fused`).
    """
    x_start, x_count, x_weights = antialias_taps(in_w, width)
    y_start, y_count, y_weights = antialias_taps(in_h, height)
    tmp = torch.empty(channels * y_weights.shape[1] * width, dtype=torch.float32)
    out = torch.empty((channels, height, width), dtype=torch.float32)
    return out, (tmp.numpy(), out.numpy(), channels, in_h, in_w, height, width, x_start,
                 x_count, x_weights, y_start, y_count, y_weights, fused)


def resize_antialiased(batch: torch.Tensor, height: int, width: int,
                       fused: bool) -> torch.Tensor:
    """Resize a float32 CPU (B, C, H, W) tensor by the compiled kernel (see fit_to_input)."""
    from .kernels import kernels
    b, c, in_h, in_w = batch.shape
    src = batch.detach().contiguous()
    out, args = resize_call(b * c, in_h, in_w, height, width, fused)
    kernels.resize_aa(src.numpy(), *args)
    return out.view(b, c, height, width)


@functools.lru_cache(maxsize=64)
def resize_arithmetic(in_h: int, in_w: int, height: int, width: int) -> Optional[bool]:
    """Which arithmetic gives torch's bits for this resize: fused multiply-adds, or not.

    None where neither does (or the extension is not built): torch resizes. Found once per
    pair of sizes and process, on a random image of these sizes, since torch's arithmetic
    depends on its build, the CPU and the number of taps (it matches ours up to about two
    taps per output on each side, not for strong shrinking).
    """
    try:
        image = torch.rand(1, 1, in_h, in_w, generator=torch.Generator().manual_seed(0))
        want = F.interpolate(image, size=(height, width), mode='bilinear',
                             align_corners=False, antialias=True)
        for fused in (True, False):
            try:
                if torch.equal(resize_antialiased(image, height, width, fused), want):
                    return fused
            except ValueError:  # no fused multiply-add in this build or CPU
                continue
    except ImportError:  # the extension is not built
        pass
    return None


def compiled_resize(in_h: int, in_w: int, height: int, width: int) -> Optional[bool]:
    """Return the arithmetic of fit_to_input's compiled resize between these sizes, or None.

    None where fit_to_input resizes a float32 CPU image by torch: sizes that do not shrink
    (plain bilinear), or where neither arithmetic gives torch's bits (`resize_arithmetic`).
    """
    if not (height < in_h or width < in_w):
        return None
    return resize_arithmetic(in_h, in_w, height, width)


def _compiled_arithmetic(batch: torch.Tensor, height: int, width: int) -> Optional[bool]:
    if batch.device.type != 'cpu' or batch.dtype != torch.float32 \
            or (batch.requires_grad and torch.is_grad_enabled()):
        return None
    return compiled_resize(batch.shape[-2], batch.shape[-1], height, width)
