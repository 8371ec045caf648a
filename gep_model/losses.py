"""Training objectives of the GEP stages and the downstream heads.

Stage 1 (event-image alignment), stage 2 (next-token prediction over an event/image token
stream), and the downstream depth, segmentation and classification losses. Everything is a
stateless function except the small ProjectionHead used by the InfoNCE term. The facts (weights,
temperatures, lambda) follow the GEP authors' code (uzh-rpg/generative_event_pretraining,
src/gra.py, gpt.py, dep.py, config.py, seg.py, utils.py); deviations are stated where they occur.

Masked terms select with torch.where rather than multiplying by the mask, so NaN or inf in an
ignored pixel or token can neither reach the value nor the gradient. A term whose mask is empty
returns a zero that is still connected to the graph (no NaN, no host sync, and DDP still sees
every parameter used), rather than raising as the reference code does.
"""

import torch
from torch import nn
import torch.nn.functional as F

# Stage-1 weights. GEP's released config enables mse and mse_patch at 1.0; its --losses_type
# flag adds 'nce' at weight 1.0 when no weight is given.
ALIGNMENT_WEIGHTS = {'mse_tokens': 1.0, 'mse_patch': 1.0, 'nce': 1.0}
# Depth fine-tuning (GEP config.py, DEPConfig.depth_loss_weights): silog 1.0, ms_grad 0.25.
GRADIENT_WEIGHT = 0.25


class ProjectionHead(nn.Module):
    """Map student tokens into the space where InfoNCE compares them with the teacher.

    Linear(dim, hidden) - ReLU - Linear(hidden, dim), hidden = 4 * dim by default as in GEP's
    gra.py. Input (..., dim), output (..., dim).
    """

    def __init__(self, dim, hidden=None):
        super().__init__()
        hidden = 4 * dim if hidden is None else hidden
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, x):
        return self.net(x)


def info_nce(query, key, temperature):
    """Return the InfoNCE loss of query rows against key rows, positives on the diagonal.

    query, key: (N, D); both are L2-normalised, logits = q k^T / temperature (N, N), and the
    loss is the mean cross-entropy of row i against column i (query-to-key direction only, as
    in GEP's utils.info_nce_loss). Scalar.
    """
    query = F.normalize(query, dim=-1)
    key = F.normalize(key, dim=-1)
    logits = query @ key.transpose(0, 1) / temperature
    targets = torch.arange(logits.shape[0], device=logits.device)
    return F.cross_entropy(logits, targets)


def alignment_loss(student_tokens, teacher_tokens, student_patch, teacher_patch, projector,
                   temperature=0.2, weights=None):
    """Return the stage-1 loss aligning the event student with the frozen image teacher.

    student_tokens, teacher_tokens: (B, N, D) final normed tokens; student_patch, teacher_patch:
    (B, N, D) patch embeddings (both None to skip the term); projector: the ProjectionHead
    applied per student token before mean pooling over N for InfoNCE (None allowed only when
    the 'nce' weight is 0). Temperature 0.2 is GEP's nce_temperature_default.

    The teacher side is detached. Returns (total, terms): terms maps 'mse_tokens', 'mse_patch'
    and 'nce' to the unweighted scalars (still in the graph, e.g. for gradient-norm balancing);
    total = sum(weights[name] * term). Terms with weight 0 are skipped and absent from terms.
    """
    weights = {**ALIGNMENT_WEIGHTS, **(weights or {})}
    unknown = set(weights) - set(ALIGNMENT_WEIGHTS)
    if unknown:
        raise ValueError(f'unknown alignment terms {sorted(unknown)}')
    terms = {}
    if weights['mse_tokens']:
        terms['mse_tokens'] = F.mse_loss(student_tokens, teacher_tokens.detach())
    if weights['mse_patch'] and student_patch is not None:
        terms['mse_patch'] = F.mse_loss(student_patch, teacher_patch.detach())
    if weights['nce']:
        if projector is None:
            raise ValueError('the nce term needs a projector; set its weight to 0 to skip it')
        query = projector(student_tokens).mean(dim=1)
        terms['nce'] = info_nce(query, teacher_tokens.detach().mean(dim=1), temperature)
    total = sum(weights[name] * term for name, term in terms.items())
    if not terms:
        total = student_tokens.sum() * 0
    return total, terms


def next_token_loss(pred, target, modality, weights=None, valid=None):
    """Return the stage-2 next-token regression loss over the counted tokens.

    pred, target: (B, T, D), pred[:, t] being the prediction of target[:, t] (shift done by the
    caller); target is treated as a constant (detached), as in GEP's gpt.py. modality: (B, T)
    integer ids (this project's: gep_model.nn.temporal.EVENT = 0, IMAGE = 1; GEP's own code
    uses 0 padding, 1 image, 2 event). weights: None counts every token with weight 1; a
    mapping {modality_id: weight} counts only the listed modalities, e.g. {EVENT: 1.0} for
    event tokens only. valid: optional (B, T) bool, False at padding tokens.

    Per-token error is the MSE over D; the loss is sum(w * err) / sum(w), i.e. the plain mean
    over counted tokens for unit weights (GEP's F.mse_loss also averages over its zero padding).
    When nothing counts it returns a graph-connected 0 instead of raising, so a batch without
    the selected modality does not stop training. Scalar.
    """
    if weights is None:
        token_weight = torch.ones(modality.shape, dtype=pred.dtype, device=pred.device)
    else:
        token_weight = torch.zeros(modality.shape, dtype=pred.dtype, device=pred.device)
        for modality_id, weight in weights.items():
            token_weight = torch.where(modality == modality_id,
                                       token_weight.new_tensor(float(weight)), token_weight)
    if valid is not None:
        token_weight = torch.where(valid.bool(), token_weight, token_weight.new_zeros(()))
    counted = token_weight != 0
    error = (pred - target.detach()).pow(2).mean(dim=-1)
    error = torch.where(counted, error, error.new_zeros(()))
    total_weight = token_weight.sum()
    loss = (token_weight * error).sum() / torch.where(counted.any(), total_weight,
                                                      total_weight.new_ones(()))
    return loss


def _check_same_shape(**tensors):
    shapes = {name: tuple(t.shape) for name, t in tensors.items() if t is not None}
    if len(set(shapes.values())) > 1:
        raise ValueError(f'shapes must match (no broadcasting): {shapes}')


def _valid_depth(target_depth, valid):
    """Pixels with usable ground truth: finite, positive, and inside the caller's mask."""
    mask = torch.isfinite(target_depth) & (target_depth > 0)
    return mask if valid is None else mask & valid.bool()


def _wide(x):
    """Upcast half-precision input (autocast) so sums over many pixels stay accurate."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _safe_sqrt(x):
    """Square root with value and gradient 0 (not NaN) where x <= 0."""
    positive = x > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, x, torch.ones_like(x))),
                       torch.zeros_like(x))


def silog_loss(pred_log_depth, target_depth, valid=None, lam=0.85, scale=1.0):
    """Return the scale-invariant log loss of Eigen et al. (2014).

    pred_log_depth: natural log of the predicted depth; target_depth: metric depth; valid:
    optional bool mask; all of the same shape, (B, H, W) or (B, 1, H, W). Pixels with
    non-finite or non-positive ground truth are invalid too. With d = pred_log - log(target)
    over the valid pixels of the whole batch:

        loss = scale * sqrt(mean(d^2) - lam * mean(d)^2)

    lam=0.85 and scale=1 are GEP's dep.py defaults (0.85 is also BTS's variance_focus; BTS
    uses scale 10); lam=1 makes the loss invariant to a global scale of the prediction. A batch
    without valid pixels gives 0 and finite gradients. Scalar.
    """
    _check_same_shape(pred=pred_log_depth, target=target_depth, valid=valid)
    valid = _valid_depth(target_depth, valid)
    log_target = torch.log(torch.where(valid, target_depth, torch.ones_like(target_depth)))
    diff = torch.where(valid, _wide(pred_log_depth) - _wide(log_target), 0)
    count = valid.sum().clamp_min(1)
    mean = diff.sum() / count
    variance = (diff * diff).sum() / count - lam * mean * mean
    return scale * _safe_sqrt(variance)


def gradient_matching_loss(pred_log, target_log, valid=None, scales=4):
    """Return the multi-scale scale-invariant gradient matching loss (MegaDepth, MiDaS).

    pred_log, target_log: log depth; valid: optional bool mask; all of the same shape, the last
    two dims spatial. With R = pred_log - target_log on valid pixels, at each scale k < scales
    the maps are subsampled with stride 2^k (as MiDaS does, so invalid pixels never leak into
    valid ones, unlike GEP's average pooling), and the level loss is the mean |dR/dx| over
    horizontally adjacent valid pairs plus the mean |dR/dy| over vertical ones. The result is
    the average over levels that have any valid pair (GEP's normalisation, to which its 0.25
    weight belongs). A global scale of the prediction adds a constant to R and cancels. 0 when
    nothing is valid. Scalar.
    """
    _check_same_shape(pred=pred_log, target=target_log, valid=valid)
    mask = torch.isfinite(target_log)
    mask = mask if valid is None else mask & valid.bool()
    residual = torch.where(mask, _wide(pred_log) - _wide(torch.where(mask, target_log, 0)), 0)
    total = residual.new_zeros(())
    levels = residual.new_zeros(())
    for level in range(scales):
        step = 2 ** level
        res = residual[..., ::step, ::step]
        lvl_mask = mask[..., ::step, ::step]
        level_loss = residual.new_zeros(())
        pairs_total = residual.new_zeros(())
        for dim in (-1, -2):
            length = res.shape[dim]
            grad = (res.narrow(dim, 1, length - 1) - res.narrow(dim, 0, length - 1)).abs()
            pairs = lvl_mask.narrow(dim, 1, length - 1) & lvl_mask.narrow(dim, 0, length - 1)
            pair_count = pairs.sum()
            level_loss = level_loss + torch.where(pairs, grad, 0).sum() / pair_count.clamp_min(1)
            pairs_total = pairs_total + pair_count
        has_pairs = pairs_total > 0
        total = total + torch.where(has_pairs, level_loss, 0)
        levels = levels + has_pairs
    return total / levels.clamp_min(1)


def depth_loss(pred_log_depth, target_depth, valid=None, lam=0.85, grad_weight=GRADIENT_WEIGHT,
               scales=4):
    """Return GEP's depth fine-tuning loss: silog + 0.25 * gradient matching.

    Shapes and masking as in silog_loss. Returns (total, {'silog': ..., 'grad': ...}).
    """
    valid = _valid_depth(target_depth, valid)
    target_log = torch.log(torch.where(valid, target_depth, torch.ones_like(target_depth)))
    terms = {
        'silog': silog_loss(pred_log_depth, target_depth, valid, lam=lam),
        'grad': gradient_matching_loss(pred_log_depth, target_log, valid, scales=scales),
    }
    return terms['silog'] + grad_weight * terms['grad'], terms


def _segmentation_inputs(logits, labels, ignore_index):
    """Return (valid mask (B, *S), logits zeroed at ignored pixels, labels clamped into range)."""
    if logits.shape[:1] + logits.shape[2:] != labels.shape:
        raise ValueError(f'logits (B, C, *S) {tuple(logits.shape)} and labels (B, *S) '
                         f'{tuple(labels.shape)} do not match')
    valid = labels != ignore_index
    safe_logits = torch.where(valid.unsqueeze(1), logits, 0)
    safe_labels = torch.where(valid, labels, 0).long()
    return valid, safe_logits, safe_labels


def dice_loss(logits, labels, ignore_index=255, smooth=1e-6):
    """Return the multi-class soft Dice loss with ignored pixels removed.

    logits: (B, C, *S) raw scores; labels: (B, *S) integer classes, ignore_index marking
    pixels left out. As in GEP's utils.multiclass_dice_loss, Dice is computed per class over
    all valid pixels of the batch, dice_c = (2 sum p_c y_c + smooth) / (sum p_c + sum y_c +
    smooth), and the loss is 1 - mean over all C classes (a class absent from the batch thus
    contributes about 1, with almost no gradient). A fully ignored batch gives 0. Scalar.
    """
    valid, safe_logits, safe_labels = _segmentation_inputs(logits, labels, ignore_index)
    num_classes = logits.shape[1]
    probs = torch.where(valid.unsqueeze(1), _wide(safe_logits).softmax(dim=1), 0)
    onehot = F.one_hot(safe_labels, num_classes).movedim(-1, 1) & valid.unsqueeze(1)
    reduce_dims = [0] + list(range(2, logits.dim()))
    intersection = (probs * onehot).sum(dim=reduce_dims)
    cardinality = probs.sum(dim=reduce_dims) + onehot.sum(dim=reduce_dims)
    denominator = cardinality + smooth
    dice = torch.where(denominator > 0,
                       (2 * intersection + smooth) / torch.where(denominator > 0, denominator, 1),
                       1)
    return 1 - dice.mean()


def segmentation_loss(logits, labels, ignore_index=255, dice_weight=1.0):
    """Return GEP's segmentation loss: cross-entropy + dice_weight * Dice (seg.py).

    logits: (B, C, *S); labels: (B, *S). The cross-entropy is the mean over non-ignored pixels
    (0 when all are ignored, where F.cross_entropy would give NaN). Returns (total,
    {'ce': ..., 'dice': ...}).
    """
    valid, safe_logits, safe_labels = _segmentation_inputs(logits, labels, ignore_index)
    per_pixel = F.cross_entropy(_wide(safe_logits), safe_labels, reduction='none')
    ce = torch.where(valid, per_pixel, 0).sum() / valid.sum().clamp_min(1)
    terms = {'ce': ce, 'dice': dice_loss(logits, labels, ignore_index)}
    return terms['ce'] + dice_weight * terms['dice'], terms


NO_CATEGORY = -1  # the window cache's category of a window that has none


def classification_loss(logits, labels, label_smoothing=0.0):
    """Return the mean cross-entropy of logits (B, C) against integer labels (B,).

    label_smoothing mixes the one-hot target with the uniform distribution (Szegedy et al.),
    as torch.nn.functional.cross_entropy defines it. Windows labelled NO_CATEGORY (-1) are
    left out of the mean; with none labelled the loss is 0 (and still part of the graph).
    Scalar.
    """
    if not bool((labels != NO_CATEGORY).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, labels, ignore_index=NO_CATEGORY,
                           label_smoothing=label_smoothing)
