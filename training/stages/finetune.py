"""Task fine-tuning: depth and/or segmentation heads on labelled windows.

The model sees sequences of T windows (the temporal context the robot also has) and is
supervised on every window with a label: depth with SILog plus the multi-scale gradient
loss, segmentation with cross-entropy plus Dice (255 ignored). By default the encoders stay
frozen and the heads, the context projection and the temporal backbone learn
(`unfreeze: heads | temporal | all`). Validation metrics each evaluation:
gep_model.metrics over the validation split.
"""

import torch
from torch import nn

from gep_model.losses import depth_loss, segmentation_loss
from gep_model.metrics import DepthMetrics, SegmentationMetrics

from .common import build_model, ConfigError, freeze, param_groups
from .data import datasets, to_device

UNFREEZE = {
    'heads': ('depth_head', 'seg_head', 'cls_head', 'context_proj'),
    'temporal': ('depth_head', 'seg_head', 'cls_head', 'context_proj', 'temporal'),
    'all': None,
}


class FinetuneObjective(nn.Module):
    """The trained module: the GEP model with its task losses."""

    def __init__(self, gep, depth_weight=1.0, seg_weight=1.0):
        super().__init__()
        self.gep = gep
        self.depth_weight = depth_weight
        self.seg_weight = seg_weight

    def forward(self, batch):
        """Return (loss, terms, outputs) for a batch of T-window sequences."""
        out = self.gep(batch['events'], batch['images'], batch['has_image'])
        terms = {}
        total = out['depth'].new_zeros(())
        if 'log_depth' in out and self.depth_weight:
            depth = batch['depth'].flatten(0, 1)  # (B*T, H, W), NaN where unknown
            valid = torch.isfinite(depth) & (depth > 0) & batch['has_depth'].flatten(0, 1)[
                :, None, None]
            loss, parts = depth_loss(out['log_depth'].flatten(0, 1)[:, 0], depth, valid)
            terms.update(depth=loss, **{f'depth_{k}': v for k, v in parts.items()})
            total = total + self.depth_weight * loss
        if 'seg_logits' in out and self.seg_weight:
            labels = batch['labels'].flatten(0, 1).clone()
            labels[~batch['has_labels'].flatten(0, 1)] = 255
            loss, parts = segmentation_loss(out['seg_logits'].flatten(0, 1), labels)
            terms.update(segmentation=loss, **{f'seg_{k}': v for k, v in parts.items()})
            total = total + self.seg_weight * loss
        return total, terms, out


class FinetuneStage:
    name = 'finetune'

    def __init__(self, config, device):
        self.config = config
        self.device = device
        gep = build_model(config)
        which = config.get('unfreeze', 'temporal')
        if which not in UNFREEZE:
            raise ConfigError(f'unfreeze: {which!r} is not one of {", ".join(UNFREEZE)}')
        if UNFREEZE[which] is not None:
            freeze(gep)
            for name in UNFREEZE[which]:
                module = getattr(gep, name, None)
                if module is not None:
                    freeze(module, False)
        losses = config.get('losses') or {}
        self.model = FinetuneObjective(gep, float(losses.get('depth', 1.0)),
                                       float(losses.get('segmentation', 1.0)))
        length = int((config.get('data') or {}).get('sequence_length', 2))
        self.train_set, self.val_set = datasets(config, sequence_length=length)
        labelled = self.train_set.labelled_items()
        limit = (config.get('data') or {}).get('max_labelled')
        if limit:  # few-label experiments: a fixed, seeded subset of the labelled sequences
            g = torch.Generator().manual_seed(int(config.get('loop', {}).get('seed', 0)))
            labelled = [labelled[i] for i in torch.randperm(len(labelled), generator=g)[:limit]]
        if not labelled:
            raise ConfigError('data: no labelled windows (depth or labels ground truth)')
        self.items = labelled
        self.num_samples = len(labelled)

    def param_groups(self, model):
        scales = (self.config.get('loop') or {}).get('lr_scales')
        return param_groups(model, self.config.get('loop', {}).get('weight_decay', 0.05), scales)

    def batch(self, indices):
        return to_device(self.train_set.batch([self.items[i] for i in indices]), self.device)

    def loss(self, model, batch):
        loss, terms, _ = model(batch)
        return loss, {k: float(v.detach()) for k, v in terms.items()}

    def evaluate(self, model):
        gep = model.module.gep if hasattr(model, 'module') else model.gep
        heads = gep.config.heads
        depth = DepthMetrics(min_depth=heads.min_depth, max_depth=heads.max_depth)
        seg = SegmentationMetrics(max(heads.num_classes, 1))
        for start in range(0, len(self.val_set), 4):
            idx = list(range(start, min(start + 4, len(self.val_set))))
            b = to_device(self.val_set.batch(idx), self.device)
            _, _, out = model(b)
            last = (slice(None), -1)  # score each sequence's newest window
            if 'depth' in out and bool(b['has_depth'][last].any()):
                keep = b['has_depth'][last]
                depth.update(out['depth'][last][:, 0][keep], b['depth'][last][keep])
            if 'seg_logits' in out and bool(b['has_labels'][last].any()):
                keep = b['has_labels'][last]
                seg.update(out['seg_logits'][last][keep], b['labels'][last][keep])
        metrics = {f'depth_{k}': v for k, v in depth.compute().items() if isinstance(v, float)}
        metrics.update({f'seg_{k}': v for k, v in seg.compute().items() if isinstance(v, float)})
        return metrics
