"""The training loop every stage runs: one engine, the stage supplies model, data and loss.

A stage object provides `model` (an nn.Module), `param_groups(model)`, `num_samples`,
`batch(indices)` (a batch from sample indices, on the device), `loss(model, batch)` ->
(loss, {name: float}) and optionally `evaluate(model)` -> {name: float} and `state()` (what
the checkpoint should carry besides the weights). The engine does the rest: torchrun DDP,
autocast on GPU, gradient accumulation, the cosine schedule, TensorBoard logs and a tqdm
bar on rank 0, atomic checkpoints every `ckpt_every` steps, exact resumption (the batch
order is a pure function of seed and position, RNG states are restored), and a clean stop
on a non-finite loss.
"""

from dataclasses import asdict, dataclass
import math
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from .checkpoint import LAST, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .distributed import all_reduce_sum, barrier
from .schedule import cosine_lr


class NonFiniteLoss(RuntimeError):
    """Training stopped: the loss became NaN or infinite (the message says where)."""


@dataclass
class LoopConfig:
    steps: int = 100
    batch_size: int = 4  # per process and micro-step
    grad_accum: int = 1
    lr: float = 3e-4
    min_lr: float = 1e-6
    warmup_steps: int = 10
    weight_decay: float = 0.05
    grad_clip: float = 1.0  # gradient-norm clipping; 0 turns it off
    grad_clip_value: float = 0.0  # then each gradient element clipped to +-this; 0: off
    seed: int = 0
    amp: str = 'bf16'  # autocast dtype on GPU: bf16, fp16 or none (CPU runs in fp32)
    log_every: int = 10
    ckpt_every: int = 50
    eval_every: int = 0  # 0: evaluate at the end only


def batch_indices(num_samples, batch_size, seed, micro_step, rank=0, world=1):
    """Sample indices of one micro-batch: a pure function of the position in training.

    Epochs are seeded permutations; each process takes every world-th batch. Resuming at a
    micro-step therefore continues with exactly the batches an uninterrupted run would see.
    """
    per_epoch = max(num_samples // (batch_size * world), 1)
    epoch, within = divmod(micro_step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(num_samples)
    start = (within * world + rank) * batch_size
    return [int(order[(start + i) % num_samples]) for i in range(batch_size)]


class Trainer:
    """Run a stage's training; see the module docstring."""

    def __init__(self, stage, loop, out_dir, dist, writer=None, progress=True, config=None):
        self.stage = stage
        self.loop = loop
        self.out_dir = Path(out_dir)
        self.dist = dist
        self.config = config or {}
        self.model = stage.model.to(dist.device)
        groups = stage.param_groups(self.model)
        self.optimizer = torch.optim.AdamW(groups, lr=loop.lr, weight_decay=loop.weight_decay)
        self.ddp = (DistributedDataParallel(self.model) if dist.distributed else self.model)
        self.step = 0
        self.history = []  # (step, loss) on this process
        self.writer = writer
        self.progress = progress and dist.is_main

    # -- checkpoints --------------------------------------------------------------------
    def resume(self):
        """Continue from out_dir/last.pt if it exists; return True if it did."""
        path = self.out_dir / LAST
        if not path.exists():
            return False
        ckpt = load_checkpoint(path, map_location=self.dist.device)
        self.model.load_state_dict(ckpt['model'])
        self.optimizer.load_state_dict(ckpt['optimizer'])
        self.step = ckpt['step']
        self.history = [tuple(h) for h in ckpt['history']]
        set_rng_state(ckpt['rng'])
        if hasattr(self.stage, 'load_state'):
            self.stage.load_state(ckpt.get('stage', {}))
        return True

    def save(self):
        if self.dist.is_main:
            payload = {'model': self.model.state_dict(), 'optimizer': self.optimizer.state_dict(),
                       'step': self.step, 'history': [list(h) for h in self.history],
                       'rng': rng_state(), 'loop': asdict(self.loop), 'config': self.config,
                       'stage': self.stage.state() if hasattr(self.stage, 'state') else {}}
            save_checkpoint(self.out_dir, payload)
        barrier()

    # -- the loop -----------------------------------------------------------------------
    def _autocast(self):
        device = self.dist.device
        if device.type != 'cuda' or self.loop.amp == 'none':
            return torch.autocast(device.type, enabled=False)
        dtype = torch.bfloat16 if self.loop.amp == 'bf16' else torch.float16
        return torch.autocast('cuda', dtype=dtype)

    def train(self, stop_after=None):
        """Run to `loop.steps` (or `stop_after` more steps); return the metrics at the end."""
        loop, stage = self.loop, self.stage
        scaler = torch.amp.GradScaler(enabled=self.dist.device.type == 'cuda'
                                      and loop.amp == 'fp16')
        end = loop.steps if stop_after is None else min(loop.steps, self.step + stop_after)
        bar = None
        if self.progress:
            from tqdm import tqdm
            bar = tqdm(total=loop.steps, initial=self.step, desc=getattr(stage, 'name', 'train'),
                       dynamic_ncols=True)
        self.ddp.train()
        while self.step < end:
            lr = cosine_lr(self.step, loop.lr, loop.warmup_steps, loop.steps, loop.min_lr)
            for group in self.optimizer.param_groups:
                group['lr'] = lr * group.get('lr_scale', 1.0)
            total, logs = 0.0, {}
            for micro in range(loop.grad_accum):
                index = self.step * loop.grad_accum + micro
                batch = stage.batch(batch_indices(stage.num_samples, loop.batch_size, loop.seed,
                                                  index, self.dist.rank, self.dist.world_size))
                with self._autocast():
                    loss, logs = stage.loss(self.ddp, batch)
                self._check_finite(loss, logs)
                scaler.scale(loss / loop.grad_accum).backward()
                total += float(loss.detach()) / loop.grad_accum
            scaler.unscale_(self.optimizer)
            if loop.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), loop.grad_clip)
            if loop.grad_clip_value:  # after the norm, as GEP's gra.py:530-531 and gpt.py:307-308
                torch.nn.utils.clip_grad_value_(self.model.parameters(), loop.grad_clip_value)
            scaler.step(self.optimizer)
            scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            self.history.append((self.step, total))
            if self.writer is not None and (self.step % loop.log_every == 0 or self.step == end):
                self.writer.add_scalar('train/loss', total, self.step)
                self.writer.add_scalar('train/lr', lr, self.step)
                for name, value in logs.items():
                    self.writer.add_scalar(f'train/{name}', value, self.step)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f'{total:.4f}', lr=f'{lr:.2e}')
            if self.step % loop.ckpt_every == 0 or self.step == end:
                self.save()
            if loop.eval_every and self.step % loop.eval_every == 0 and self.step != end:
                self.evaluate()
        if bar is not None:
            bar.close()
        return self.evaluate() if self.step == loop.steps else {}

    def _check_finite(self, loss, logs):
        bad = torch.tensor([0.0 if math.isfinite(float(loss.detach())) else 1.0])
        if all_reduce_sum(bad.to(self.dist.device)).item() > 0:
            terms = ', '.join(f'{k}={v:.4g}' for k, v in logs.items())
            raise NonFiniteLoss(f'loss became non-finite at step {self.step + 1} '
                                f'({terms or "no terms"}); the last good checkpoint is '
                                f'{self.out_dir / LAST}. Lower the learning rate or check '
                                f'the data.')

    def evaluate(self):
        if not hasattr(self.stage, 'evaluate'):
            return {}
        self.model.eval()
        with torch.no_grad():
            metrics = self.stage.evaluate(self.model)
        self.model.train()
        if self.writer is not None:
            for name, value in metrics.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self.writer.add_scalar(f'val/{name}', value, self.step)
        return metrics
