"""Learning-rate schedule: linear warm-up, then cosine decay to a floor (a pure function)."""

import math


def cosine_lr(step, base_lr, warmup_steps, total_steps, min_lr=0.0):
    """Return the learning rate at `step` (0-based)."""
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return min_lr
    span = max(total_steps - warmup_steps, 1)
    progress = (step - warmup_steps) / span
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (base_lr - min_lr)
