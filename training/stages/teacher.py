"""A self-supervised image teacher for stage align, and its frame-only reference score.

GEP aligns the event encoder to a frozen image foundation model (DINOv2). Where none can be
downloaded, `train_teacher` makes a stand-in that, like DINOv2, never sees a label: a ViT of
the variant's encoder architecture (gep_tiny by default) trained as a masked autoencoder
(training.stages.mae) on frames alone. Frames reach it through `frames()`, which returns the
images tensor and nothing else, so depth and segmentation labels in the same cache cannot.
What is kept is the encoder's ViT state dict, a .safetensors file that stage align takes as
`teacher=`.

Why a masked autoencoder rather than self-distillation (DINO): on a CPU, MAE's encoder runs
on a quarter of the patches and one view per image, where DINO runs a student and an EMA
teacher on two or more views; and its reconstruction loss cannot collapse, where DINO's
centring and sharpening need large batches and long schedules to stay away from a constant
output. The cost: MAE features are less linearly separable than DINO's, so the aligned
tokens carry a reconstruction teacher's character, not DINOv2's.

The frame-only reference (`FrameFinetuneStage`): the teacher as the encoder of an event-only
GEP model whose input is the frame instead of the event window, fine-tuned with the same
config, budget and rules as the event arms. It says what the teacher's own features buy on
frames, the line the event arms are read against.
"""

from dataclasses import replace
import math
from pathlib import Path
import time

from safetensors.torch import save_file
import torch

from gep_model.nn.encoder import ViTEncoder

from .common import build_model, ConfigError, model_config, read_state_dict
from .finetune import FinetuneStage
from .mae import augment_frames, MaskedAutoencoder
from ..data.cache import build_cache
from ..data.dataset import WindowDataset
from ..engine.checkpoint import save_checkpoint
from ..engine.schedule import cosine_lr
from ..engine.trainer import batch_indices

DEFAULT_REPRESENTATION = {'name': 'polarity_rgb', 'percentile': 90.0}


def teacher_encoder(input_size, variant='gep_tiny'):
    """Return a 3-channel ViTEncoder of `variant` at input_size: the teacher's architecture."""
    cfg = model_config({'variant': variant, 'model': {'input_size': list(input_size)}})
    return ViTEncoder(replace(cfg.encoder, in_chans=3), cfg.input_size)


def frames(dataset, indices):
    """Return only the frames, (B, 3, H, W) in [0, 1], of single-window items."""
    return dataset.batch(indices)['images'][:, 0]


def train_teacher(bags, out_file, input_size, steps, seed=0, cache='out/cache',
                  variant='gep_tiny', batch_size=16, lr=1e-3, mask_ratio=0.75,
                  warmup_steps=None, weight_decay=0.05, window=None, representation=None,
                  log_every=0):
    """Train the teacher ViT as a masked autoencoder on the frames of `bags`; save it.

    bags: any bags with frames (their depth and labels are never read). The frames come
    through the window cache under `cache`, shared with the stages when the window and
    representation match. Returns a dict: the file, the method, the reconstruction loss of
    the first and last steps, the validation frames' loss (fixed masks, no augmentation),
    the number of training frames and the wall time.
    """
    if int(steps) < 1:
        raise ValueError(f'teacher steps: {steps} must be at least 1')
    if int(batch_size) < 1:
        raise ValueError(f'teacher batch_size: {batch_size} must be at least 1')
    start = time.perf_counter()
    torch.manual_seed(seed)
    folder = build_cache(list(bags), cache, representation or DEFAULT_REPRESENTATION,
                         tuple(input_size), window or {'duration_ms': 50.0})
    train_set = WindowDataset(folder, 'train', 1)
    val_set = WindowDataset(folder, 'val', 1)
    if not len(train_set):
        raise ValueError(f'{", ".join(map(str, bags))}: no frames to train the teacher on')
    mae = MaskedAutoencoder(teacher_encoder(input_size, variant), mask_ratio)
    decay = [p for n, p in mae.named_parameters() if p.ndim >= 2 and 'pos' not in n
             and 'token' not in n]
    rest = [p for n, p in mae.named_parameters() if not (p.ndim >= 2 and 'pos' not in n
                                                         and 'token' not in n)]
    optimizer = torch.optim.AdamW([{'params': decay, 'weight_decay': weight_decay},
                                   {'params': rest, 'weight_decay': 0.0}], lr=lr,
                                  betas=(0.9, 0.95))
    warmup = max(steps // 10, 1) if warmup_steps is None else warmup_steps
    generator = torch.Generator().manual_seed(seed)
    mae.train()
    losses = []
    for step in range(steps):
        for group in optimizer.param_groups:
            group['lr'] = cosine_lr(step, lr, warmup, steps, 1e-6)
        picked = batch_indices(len(train_set), batch_size, seed, step)
        images = augment_frames(frames(train_set, picked), generator)
        loss, _, _ = mae(images, generator)
        if not math.isfinite(float(loss.detach())):
            raise RuntimeError(f'teacher: the loss became non-finite at step {step + 1}')
        loss.backward()
        torch.nn.utils.clip_grad_norm_(mae.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        if log_every and (step + 1) % log_every == 0:
            print(f'teacher step {step + 1}/{steps}: loss {losses[-1]:.4f}', flush=True)
    mae.eval()
    val_loss, n = 0.0, 0
    fixed = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for first in range(0, len(val_set), batch_size):
            idx = list(range(first, min(first + batch_size, len(val_set))))
            val_loss += float(mae(frames(val_set, idx), fixed)[0]) * len(idx)
            n += len(idx)
    vit = mae.encoder.vit
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in vit.state_dict().items()}, str(out_file))
    head = max(len(losses) // 10, 1)
    return {'file': str(out_file), 'method': 'masked autoencoder',
            'mask_ratio': mask_ratio, 'steps': steps, 'batch_size': batch_size,
            'first_loss': sum(losses[:head]) / head, 'train_loss': sum(losses[-head:]) / head,
            'val_loss': val_loss / n if n else float('nan'), 'frames': len(train_set),
            'wall_s': time.perf_counter() - start}


def teacher_checkpoint(teacher_file, config, out_dir):
    """Write a checkpoint (out_dir/last.pt) of `config`'s model with the teacher as encoder.

    The rest of the model (temporal backbone, heads) keeps its random initialisation, as in
    a fine-tuning run from scratch. Give out_dir as `init=` to a fine-tuning config.
    """
    model = build_model({k: v for k, v in config.items() if k != 'init'})
    if model.encoder.cfg.in_chans != 3:
        raise ConfigError(f'teacher: the encoder takes {model.encoder.cfg.in_chans} channels; '
                          'a frame teacher needs a 3-channel representation')
    from timm.models.vision_transformer import checkpoint_filter_fn
    state = checkpoint_filter_fn(read_state_dict(teacher_file), model.encoder.vit)
    missing, _ = model.encoder.load_teacher(state)
    missing = [k for k in missing if not k.startswith('head')]
    if missing:
        raise ConfigError(f'teacher: {teacher_file} lacks {missing[0]} ({len(missing)} '
                          'missing); is it a ViT of this variant?')
    payload = {'model': {f'gep.{k}': v for k, v in model.state_dict().items()}, 'step': 0,
               'config': {'stage': 'teacher', 'teacher': str(teacher_file),
                          'model_config': model.config.to_dict()}}
    return save_checkpoint(out_dir, payload)


class FramesAsEvents:
    """A WindowDataset view whose items carry the window's frame in place of its events."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __getattr__(self, name):
        if name == 'dataset':
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, item):
        found = self.dataset[item]
        return dict(found, events=found['images'])

    def batch(self, indices):
        found = self.dataset.batch(indices)
        return dict(found, events=found['images'])


class FrameFinetuneStage(FinetuneStage):
    """Stage finetune with the frame as the encoder's input (the frame-only reference)."""

    def __init__(self, config, device):
        super().__init__(config, device)
        if self.model.gep.config.encoder.in_chans != 3:
            raise ConfigError('representation: the frame reference needs a 3-channel encoder')
        self.train_set = FramesAsEvents(self.train_set)
        self.val_set = FramesAsEvents(self.val_set)


def train_frame_reference(config, out_dir):
    """Run FrameFinetuneStage to config['loop'] in one process; return its final metrics."""
    from ..engine.distributed import cleanup, init_distributed
    from ..engine.trainer import Trainer
    from ..run import loop_config
    dist = init_distributed(config.get('device'))
    loop = loop_config(config)
    torch.manual_seed(loop.seed)
    try:
        stage = FrameFinetuneStage(config, dist.device)
        config = dict(config, stage='finetune_frames',
                      model_config=model_config(config).to_dict())
        trainer = Trainer(stage, loop, out_dir, dist, None, False, config)
        trainer.resume()
        return trainer.train()
    finally:
        cleanup()
