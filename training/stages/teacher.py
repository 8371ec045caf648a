"""A small image teacher for stage align, trained here when no foundation model can be had.

GEP aligns the event encoder to a frozen image foundation model (DINOv2). Where none can
be downloaded, `train_teacher` makes a stand-in: a ViT with the variant's encoder
architecture (gep_tiny by default), trained with full supervision on synthetic frames to
predict their depth and segmentation. The frame is fed to a GEPModel without image tokens
as if it were the event input, so the encoder, context, heads and losses are the task
fine-tuning ones (FinetuneObjective: SILog plus gradient matching, cross-entropy plus
Dice). What is kept is the encoder's ViT state dict, written as a .safetensors file that
stage align takes as `teacher=`.
"""

import math
from pathlib import Path
import time

from safetensors.torch import save_file
import torch

from gep_model.model import GEPModel

from .common import model_config
from .finetune import FinetuneObjective
from ..data.cache import build_cache
from ..data.dataset import WindowDataset
from ..engine.schedule import cosine_lr
from ..engine.trainer import batch_indices

DEFAULT_REPRESENTATION = {'name': 'polarity_rgb', 'percentile': 90.0}


def teacher_model(input_size, variant='gep_tiny'):
    """Return a GEPModel of `variant` at input_size without image tokens (frames go in)."""
    cfg = model_config({'variant': variant, 'model': {'input_size': list(input_size),
                                                      'temporal': {'image_tokens': False}}})
    return GEPModel(cfg)


def frame_batch(dataset, indices):
    """Return the items at `indices` with their frames in place of the events."""
    batch = dataset.batch(indices)
    return dict(batch, events=batch['images'], images=None)


def train_teacher(bags, out_file, input_size, steps, seed=0, cache='out/cache',
                  variant='gep_tiny', batch_size=8, lr=1e-3, warmup_steps=None,
                  weight_decay=0.05, window=None, representation=None, log_every=0):
    """Train the teacher ViT on the frames of `bags`; write its state dict to out_file.

    bags: synthetic (or any) bags with depth and/or label ground truth. The frames reach the
    model through the window cache under `cache` (one cache per bag set and input size,
    shared with the stages when the window and representation match). Returns a dict with
    the file, the final training loss, the frames' validation loss and the wall time.
    """
    start = time.perf_counter()
    torch.manual_seed(seed)
    folder = build_cache(list(bags), cache, representation or DEFAULT_REPRESENTATION,
                         tuple(input_size), window or {'duration_ms': 50.0})
    train_set = WindowDataset(folder, 'train', 1)
    val_set = WindowDataset(folder, 'val', 1)
    items = train_set.labelled_items()
    if not items:
        raise ValueError(f'{", ".join(map(str, bags))}: no frames with depth or labels')
    objective = FinetuneObjective(teacher_model(input_size, variant))
    decay = [p for n, p in objective.named_parameters() if p.ndim >= 2 and 'embed' not in n
             and 'token' not in n]
    rest = [p for n, p in objective.named_parameters() if not (p.ndim >= 2 and 'embed' not in n
                                                               and 'token' not in n)]
    optimizer = torch.optim.AdamW([{'params': decay, 'weight_decay': weight_decay},
                                   {'params': rest, 'weight_decay': 0.0}], lr=lr)
    warmup = max(steps // 10, 1) if warmup_steps is None else warmup_steps
    objective.train()
    loss = torch.zeros(())
    for step in range(steps):
        for group in optimizer.param_groups:
            group['lr'] = cosine_lr(step, lr, warmup, steps, 1e-6)
        picked = batch_indices(len(items), batch_size, seed, step)
        loss, _, _ = objective(frame_batch(train_set, [items[i] for i in picked]))
        if not math.isfinite(float(loss.detach())):
            raise RuntimeError(f'teacher: the loss became non-finite at step {step + 1}')
        loss.backward()
        torch.nn.utils.clip_grad_norm_(objective.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if log_every and (step + 1) % log_every == 0:
            print(f'teacher step {step + 1}/{steps}: loss {float(loss):.4f}', flush=True)
    objective.eval()
    val_loss, n = 0.0, 0
    with torch.no_grad():
        for first in range(0, len(val_set), batch_size):
            idx = list(range(first, min(first + batch_size, len(val_set))))
            val_loss += float(objective(frame_batch(val_set, idx))[0]) * len(idx)
            n += len(idx)
    vit = objective.gep.encoder.vit
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in vit.state_dict().items()}, str(out_file))
    return {'file': str(out_file), 'train_loss': float(loss.detach()),
            'val_loss': val_loss / n if n else float('nan'),
            'wall_s': time.perf_counter() - start}
