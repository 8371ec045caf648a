"""GEP stage 1: align the event encoder to a frozen image foundation model.

The student (the event encoder, a ViT with the teacher's architecture, initialised from the
teacher) sees the window's event representation; the frozen teacher sees the paired frame.
Loss (gep_model.losses.alignment_loss): MSE between final tokens, MSE between patch
embeddings, and InfoNCE between mean-pooled tokens through a 2-layer projector. The teacher
also becomes the model's image encoder, whose tokens stage 2 uses.

The authors' recipe (GEP src/config.py GraConfig, src/gra.py), each a config key:
- `losses.temperature`: InfoNCE temperature per data set, 0.5 for driving data (DSEC,
  EventScape, DDD17) and 0.2 for N-ImageNet (gra.py:318-339); 0.2 when not given.
- `augment`: red/blue polarity swap, horizontal flip, random resized crop, the same crop
  on event image and frame (training/data/augment.py); `augment: false` turns it off.
- `model.encoder.mean/std/frame_mean/frame_std`: the data set's statistics
  (`gep train stats`), instead of ImageNet's.
- `loop`: lr 2e-5, no weight decay (`loop.weight_decay`, 0 by default here), gradient norm
  clipped at 1.0, then each element at 2.0 (gra.py:530-531).
"""

import torch
from torch import nn

from gep_model.losses import alignment_loss, ProjectionHead

from training.data.augment import augment_params, paired_augment

from .common import (build_model, ConfigError, freeze, init_student_from_teacher, load_teacher,
                     param_groups)
from .data import datasets, to_device

TEMPERATURE = 0.2  # GEP's nce_temperature_default (gra.py:319)


class AlignObjective(nn.Module):
    """The trained module: the GEP model (student, frozen teacher) and the projector."""

    def __init__(self, gep, temperature, weights):
        super().__init__()
        self.gep = gep
        self.projector = ProjectionHead(gep.config.encoder.embed_dim)
        self.temperature = temperature
        self.weights = weights

    def forward(self, events, images):
        """Return (loss, {term: tensor}) for events (B, C, H, W) and images (B, 3, H, W)."""
        student, teacher = self.gep.encoder, self.gep.image_encoder
        s_tokens, _ = student(events)
        s_patch = student.patch_embed(events)
        with torch.no_grad():
            t_tokens, _ = teacher(images)
            t_patch = teacher.patch_embed(images)
        return alignment_loss(s_tokens, t_tokens, s_patch, t_patch, self.projector,
                              self.temperature, self.weights)


class AlignStage:
    name = 'align'

    def __init__(self, config, device):
        self.config = config
        self.device = device
        gep = build_model(config)
        if config.get('init'):
            freeze(gep.image_encoder)  # the teacher came with the checkpoint
        else:
            if 'teacher' not in config:
                raise ConfigError('teacher: required for stage align (a weights file or '
                                  'timm:<name>)')
            load_teacher(gep, config['teacher'])
            init_student_from_teacher(gep)
        freeze(gep)
        freeze(gep.encoder, False)
        losses = config.get('losses') or {}
        temperature = losses.get('temperature', TEMPERATURE)
        if not isinstance(temperature, (int, float)) or temperature <= 0:
            raise ConfigError(f'losses.temperature: a number > 0 (0.5 driving, 0.2 '
                              f'N-ImageNet), got {temperature!r}')
        try:
            self.augment = augment_params(config.get('augment', True))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self.model = AlignObjective(gep, float(temperature), losses.get('weights'))
        self.train_set, self.val_set = datasets(config, sequence_length=1)
        self.num_samples = len(self.train_set)

    def param_groups(self, model):
        return param_groups(model, self.config.get('loop', {}).get('weight_decay', 0.0))

    def batch(self, indices):
        b = to_device(self.train_set.batch(indices), self.device)
        return paired_augment(b['events'][:, 0], b['images'][:, 0], self.augment)

    def loss(self, model, batch):
        loss, terms = model(*batch)
        return loss, {k: float(v.detach()) for k, v in terms.items()}

    def evaluate(self, model):
        totals, n = {}, 0
        for start in range(0, len(self.val_set), 8):
            idx = list(range(start, min(start + 8, len(self.val_set))))
            b = to_device(self.val_set.batch(idx), self.device)
            loss, terms = model(b['events'][:, 0], b['images'][:, 0])
            for k, v in {'loss': loss, **terms}.items():
                totals[k] = totals.get(k, 0.0) + float(v) * len(idx)
            n += len(idx)
        return {k: v / n for k, v in totals.items()} if n else {}
