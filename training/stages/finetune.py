"""Task fine-tuning: the authors' downstream recipe on labelled windows, event-only by default.

The model sees sequences of T windows (the temporal context the robot also has) and is
supervised on every window with a label: depth with SILog plus the multi-scale gradient
loss, segmentation with cross-entropy plus Dice (255 ignored) on the UPerNet head plus 0.4 x
the same on the auxiliary FCN head (src/seg.py:829, ecddp_aux_loss_weight), classification
with cross-entropy where the data carry a category per window.

The recipe (uzh-rpg/generative_event_pretraining), each part a config key:
- `frames: false`: event-only, as the paper (use_rgb=False, src/config.py:563). The model
  is built without the frame encoder, so neither training nor the robot encodes frames.
  `true` adds the frame encoder and frame tokens (the product option for robots with a frame
  camera; README "Fine-tuning").
- `unfreeze: all` with layer-wise learning rates instead of a frozen encoder
  (`loop.lr_scales`): encoder x0.01 (x0.1 when it starts from scratch, src/config.py:356),
  temporal backbone x0.1 (src/config.py:204), heads x1; weight decay on the heads' weights
  only (src/utils.py:17). `temporal` and `heads` freeze more, for cheap runs.
- `augment`: one flip / scale / crop per sequence on events and labels alike
  (finetune_augment.py); none at evaluation.
- `eval.tta_flip`: evaluation also runs each sequence mirrored and averages the segmentation
  logits and the log depth (src/seg.py:930).
"""

import torch
from torch import nn

from gep_model.losses import classification_loss, depth_loss, NO_CATEGORY, segmentation_loss
from gep_model.metrics import DepthMetrics, SegmentationMetrics
from gep_model.nn.heads import FCNAuxHead
from training.engine.trainer import LoopConfig

from .common import build_model, ConfigError, freeze
from .data import datasets, to_device
from .finetune_augment import AugmentError, flip_outputs, SequenceAugment

UNFREEZE = {
    'heads': ('depth_head', 'seg_head', 'cls_head', 'context_proj'),
    'temporal': ('depth_head', 'seg_head', 'cls_head', 'context_proj', 'temporal'),
    'all': None,
}
# Layer-wise learning-rate multipliers (src/config.py:204-205, 356; src/utils.py:17).
LR_SCALES = {'encoder': 0.01, 'encoder_from_scratch': 0.1, 'temporal': 0.1, 'heads': 1.0}
LOSS_WEIGHTS = {'depth': 1.0, 'segmentation': 1.0, 'seg_aux': 0.4, 'classification': 1.0}
AUX_LEVEL = 2  # the auxiliary head reads the third level, block 8 of 12 (ecddp_aux_in_index)


def lr_group(name):
    """Return the learning-rate group of a FinetuneObjective parameter name."""
    if name.startswith(('gep.encoder.', 'gep.image_encoder.')):
        return 'encoder'
    if name.startswith('gep.temporal.'):
        return 'temporal'
    return 'heads'


def lr_scales(config):
    """Return the learning-rate multiplier per group from a config's `loop.lr_scales`.

    Unset groups keep the authors' values (LR_SCALES); without `init` the encoder starts
    from scratch and learns at `encoder_from_scratch`.
    """
    scales = dict(LR_SCALES)
    given = (config.get('loop') or {}).get('lr_scales') or {}
    for key, value in given.items():
        if key not in scales:
            raise ConfigError(f'loop.lr_scales.{key}: no such group ({", ".join(scales)})')
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f'loop.lr_scales.{key}: {value!r} is not a number >= 0')
        scales[key] = float(value)
    if not config.get('init'):
        scales['encoder'] = scales['encoder_from_scratch']
    return scales


def layerwise_groups(model, scales, weight_decay):
    """Return AdamW groups of a FinetuneObjective: encoder, temporal backbone, heads.

    Each group carries `name` and `lr_scale` (the engine sets lr = schedule x lr_scale).
    Weight decay applies to the heads' matrices and kernels only, as in the authors'
    get_param_groups (src/utils.py:17); the encoder and the temporal backbone are not
    decayed. Frozen parameters are left out.
    """
    groups = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        group = lr_group(name)
        decayed = group == 'heads' and p.ndim >= 2
        key = group + ('' if group != 'heads' else '_decay' if decayed else '_no_decay')
        groups.setdefault(key, {'params': [], 'name': key, 'lr_scale': scales[group],
                                'weight_decay': weight_decay if decayed else 0.0})
        groups[key]['params'].append(p)
    return list(groups.values())


def apply_frames(config):
    """Write `frames` into `model.temporal.image_tokens` of a config, in place.

    In place, so that the run's config.yaml and checkpoint rebuild the same (event-only)
    model. A contradicting explicit `model.temporal.image_tokens` is refused.
    """
    frames = config.get('frames', False)
    if not isinstance(frames, bool):
        raise ConfigError(f'frames: {frames!r} is not true or false')
    model = config.setdefault('model', {}) or {}
    config['model'] = model
    temporal = model.setdefault('temporal', {}) or {}
    model['temporal'] = temporal
    if temporal.get('image_tokens', frames) != frames:
        raise ConfigError(f'model.temporal.image_tokens: {temporal["image_tokens"]} '
                          f'contradicts frames: {frames}; set frames alone')
    temporal['image_tokens'] = frames


class FinetuneObjective(nn.Module):
    """The trained module: the GEP model, the training-only auxiliary head, the task losses."""

    def __init__(self, gep, weights=None):
        super().__init__()
        self.gep = gep
        self.weights = {**LOSS_WEIGHTS, **(weights or {})}
        width = gep.config.heads.width
        self.aux_head = (FCNAuxHead(gep.config.encoder.embed_dim, width,
                                    gep.config.heads.num_classes)
                         if gep.seg_head is not None and self.weights['seg_aux'] else None)

    def predict(self, batch, keep_features=False):
        """Run the model on a batch's events (and frames, where the model has a frame encoder)."""
        if self.gep.image_encoder is None:  # event-only: the frames are never read
            return self.gep(batch['events'], keep_features=keep_features)
        return self.gep(batch['events'], batch['images'], batch['has_image'],
                        keep_features=keep_features)

    def forward(self, batch):
        """Return (loss, terms, outputs) for a batch of T-window sequences."""
        aux = self.aux_head is not None and self.training
        out = self.predict(batch, keep_features=aux)
        w = self.weights
        terms = {}
        total = out['hidden'].new_zeros(())
        if 'log_depth' in out and w['depth']:
            depth = batch['depth'].flatten(0, 1)  # (B*T, H, W), NaN where unknown
            valid = torch.isfinite(depth) & (depth > 0) & batch['has_depth'].flatten(0, 1)[
                :, None, None]
            loss, parts = depth_loss(out['log_depth'].flatten(0, 1)[:, 0], depth, valid)
            terms.update(depth=loss, **{f'depth_{k}': v for k, v in parts.items()})
            total = total + w['depth'] * loss
        if 'seg_logits' in out and w['segmentation']:
            labels = batch['labels'].flatten(0, 1).clone()
            labels[~batch['has_labels'].flatten(0, 1)] = 255
            loss, parts = segmentation_loss(out['seg_logits'].flatten(0, 1), labels)
            terms.update(segmentation=loss, **{f'seg_{k}': v for k, v in parts.items()})
            total = total + w['segmentation'] * loss
            if aux:
                logits = self.aux_head(out['features'][AUX_LEVEL], labels.shape[-2:])
                loss, _ = segmentation_loss(logits, labels)
                terms['seg_aux'] = loss
                total = total + w['seg_aux'] * loss
        if 'class_logits' in out and w['classification'] and 'category' in batch:
            loss = classification_loss(out['class_logits'].flatten(0, 1),
                                       batch['category'].flatten(0, 1))
            terms['classification'] = loss
            total = total + w['classification'] * loss
        out.pop('features', None)
        return total, terms, out


class FinetuneStage:
    name = 'finetune'

    def __init__(self, config, device):
        self.config = config
        self.device = device
        apply_frames(config)
        gep = build_model(config)
        which = config.get('unfreeze', 'all')
        if which not in UNFREEZE:
            raise ConfigError(f'unfreeze: {which!r} is not one of {", ".join(UNFREEZE)}')
        if UNFREEZE[which] is not None:
            freeze(gep)
            for name in UNFREEZE[which]:
                module = getattr(gep, name, None)
                if module is not None:
                    freeze(module, False)
        losses = dict(config.get('losses') or {})
        unknown = sorted(set(losses) - set(LOSS_WEIGHTS))
        if unknown:
            raise ConfigError(f'losses.{unknown[0]}: no such loss ({", ".join(LOSS_WEIGHTS)})')
        self.model = FinetuneObjective(gep, {k: float(v) for k, v in losses.items()})
        self.lr_scales = lr_scales(config)
        data = config.get('data') or {}
        try:
            polarity = _representation(data) == 'polarity_rgb'
            self.augment = SequenceAugment(config.get('augment'), 1.0 if polarity else 0.0,
                                           polarity_image=polarity)
        except AugmentError as exc:
            raise ConfigError(str(exc)) from None
        self.tta_flip = bool((config.get('eval') or {}).get('tta_flip', False))
        length = int(data.get('sequence_length', 2))
        heads = gep.config.heads
        batch = int((config.get('loop') or {}).get('batch_size', LoopConfig.batch_size))
        if heads.num_classes and batch * length < 2:
            # UPerNet's pyramid pooling batch-normalises 1x1 maps: one window is one value.
            raise ConfigError(f'loop.batch_size {batch} x data.sequence_length {length}: the '
                              'segmentation head trains on at least 2 windows a step')
        self.train_set, self.val_set = datasets(config, length)
        if heads.num_categories and len(self.train_set) and 'category' not in self.train_set[0]:
            raise ConfigError('heads.num_categories: classification needs a category per window, '
                              'and these data sources carry none')
        labelled = self.train_set.labelled_items()
        limit = data.get('max_labelled')
        if limit:  # few-label experiments: a fixed, seeded subset of the labelled sequences
            g = torch.Generator().manual_seed(int(config.get('loop', {}).get('seed', 0)))
            labelled = [labelled[i] for i in torch.randperm(len(labelled), generator=g)[:limit]]
        if not labelled:
            raise ConfigError('data: no labelled windows (depth or labels ground truth)')
        self.items = labelled
        self.num_samples = len(labelled)

    def param_groups(self, model):
        weight_decay = float((self.config.get('loop') or {}).get('weight_decay', 1e-5))
        return layerwise_groups(model, self.lr_scales, weight_decay)

    def batch(self, indices):
        batch = self.train_set.batch([self.items[i] for i in indices])
        return to_device(self.augment(batch), self.device)

    def loss(self, model, batch):
        loss, terms, _ = model(batch)
        return loss, {k: float(v.detach()) for k, v in terms.items()}

    def predict(self, objective, batch):
        """Return outputs for evaluation: one run, or its mean with the mirrored run (tta_flip)."""
        out = objective.predict(batch)
        if not self.tta_flip:
            return out
        mirrored = {k: (v.flip(-1) if k in ('events', 'images') else v) for k, v in batch.items()}
        back = flip_outputs(objective.predict(mirrored))
        if 'seg_logits' in out:
            out['seg_logits'] = (out['seg_logits'] + back['seg_logits']) / 2
        if 'log_depth' in out:
            out['log_depth'] = (out['log_depth'] + back['log_depth']) / 2
            out['depth'] = torch.exp(out['log_depth'])
        if 'class_logits' in out:
            out['class_logits'] = (out['class_logits'] + back['class_logits']) / 2
        return out

    def evaluate(self, model):
        objective = model.module if hasattr(model, 'module') else model
        heads = objective.gep.config.heads
        depth = DepthMetrics(min_depth=heads.min_depth, max_depth=heads.max_depth)
        seg = SegmentationMetrics(max(heads.num_classes, 1))
        top1 = top5 = scored = 0
        for start in range(0, len(self.val_set), 4):
            idx = list(range(start, min(start + 4, len(self.val_set))))
            b = to_device(self.val_set.batch(idx), self.device)
            out = self.predict(objective, b)
            last = (slice(None), -1)  # score each sequence's newest window
            if 'depth' in out and bool(b['has_depth'][last].any()):
                keep = b['has_depth'][last]
                depth.update(out['depth'][last][:, 0][keep], b['depth'][last][keep])
            if 'seg_logits' in out and bool(b['has_labels'][last].any()):
                keep = b['has_labels'][last]
                seg.update(out['seg_logits'][last][keep], b['labels'][last][keep])
            if 'class_logits' in out and 'category' in b:
                hits = recognition_hits(out['class_logits'][last], b['category'][last])
                top1, top5, scored = top1 + hits[0], top5 + hits[1], scored + hits[2]
        metrics = {f'depth_{k}': v for k, v in depth.compute().items() if isinstance(v, float)}
        metrics.update({f'seg_{k}': v for k, v in seg.compute().items() if isinstance(v, float)})
        if scored:  # recognition, as N-ImageNet reports it
            metrics.update(cls_top1=top1 / scored, cls_top5=top5 / scored)
        return metrics


def recognition_hits(logits, category):
    """Return (top-1 hits, top-5 hits, windows scored) of (N, C) logits against (N,) categories.

    Windows without a category (NO_CATEGORY) are not scored; with fewer than 5 categories,
    top-5 is top-C.
    """
    keep = category != NO_CATEGORY
    ranked = logits[keep].topk(min(5, logits.shape[-1]), dim=-1).indices
    hits = ranked == category[keep][:, None]
    return int(hits[:, 0].sum()), int(hits.any(dim=-1).sum()), int(keep.sum())


def _representation(data):
    """Return the name of the configured event representation (the stage data's default)."""
    return (data.get('representation') or {}).get('name', 'polarity_rgb')
