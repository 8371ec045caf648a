"""Render several event windows with one representation into a (B, C, H, W) batch."""

from typing import Iterable, Optional, Tuple

import torch

from gep_model.events.base import Representation
from gep_model.events.fit import as_hw, fit_to_input, Size
from gep_model.events.tensors import DeviceLike, Time

Window = Tuple[object, Time, Time]  # (events, t0, t1)


def render_batch(representation: Representation, windows: Iterable[Window], height: int,
                 width: int, device: DeviceLike = None, size: Optional[Size] = None,
                 mode: str = 'resize') -> torch.Tensor:
    """Render each (events, t0, t1) window of a height x width sensor and stack them.

    Args:
        representation: How to render each window.
        windows: (events, t0, t1) triples; events in any form EventTensors accepts.
        height: Sensor rows.
        width: Sensor columns.
        device: Where to render (default: where each window's tensors are, CPU for numpy).
        size: If given, fit each rendered window to this (height, width) with mode.
        mode: 'resize', 'crop' or 'pad', as fit_to_input; padding uses the representation's
            background.

    Returns:
        (B, C, H', W') float32, (H', W') = size or (height, width); B may be 0.
    """
    images = []
    for events, t0, t1 in windows:
        if size is not None and mode == 'resize':
            image = representation.render_fitted(events, t0, t1, height, width, size,
                                                 device=device)
        else:
            image = representation(events, t0, t1, height, width, device=device)  # (C, H, W)
            if size is not None:
                image = fit_to_input(image, size, mode=mode, fill=representation.background)
        images.append(image)
    if images:
        return torch.stack(images)
    out_height, out_width = (height, width) if size is None else as_hw(size)
    return torch.zeros(0, representation.channels, out_height, out_width, device=device)
