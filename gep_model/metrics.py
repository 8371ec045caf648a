"""Evaluation metrics accumulated over a whole data set (depth and semantic segmentation).

Each accumulator keeps float64 sums in one flat tensor, `sums`: update() adds a batch,
compute() turns the sums into metrics at the end, so the result does not depend on how the
data set was batched (up to float64 rounding). For distributed evaluation either all_reduce the
tensor in place (`torch.distributed.all_reduce(metrics.sums)`) or combine accumulators with
merge(); state_dict()/load_state_dict() move the sums between processes or checkpoints.
"""

import math

import torch


class _SumAccumulator:
    """Flat float64 sum vector with reset, merge and (de)serialisation."""

    def __init__(self, size, device=None):
        self.sums = torch.zeros(size, dtype=torch.float64, device=device)

    def _config(self):
        raise NotImplementedError

    def reset(self):
        """Forget every batch seen so far."""
        self.sums.zero_()

    def state_dict(self):
        """Return the accumulated sums (a copy) and the configuration they belong to."""
        return {'sums': self.sums.clone(), 'config': self._config()}

    def load_state_dict(self, state):
        """Replace the sums by those of state_dict() from an identically configured instance."""
        if state['config'] != self._config():
            raise ValueError(f"config {state['config']} does not match {self._config()}")
        self.sums.copy_(state['sums'])

    def merge(self, other):
        """Add the sums of another identically configured accumulator; return self."""
        if type(other) is not type(self) or other._config() != self._config():
            raise ValueError('can only merge accumulators of the same type and configuration')
        self.sums += other.sums.to(self.sums.device)
        return self


class DepthMetrics(_SumAccumulator):
    """Monocular depth metrics over every valid pixel of a data set.

    Valid pixels: ground truth finite, > 0 and within [min_depth, max_depth] (and inside the
    optional caller mask). Predictions are clipped to [min_depth, max_depth] first, as GEP
    (dep.py) and E2Depth do. Reported: abs_rel, sq_rel, rmse, rmse_log (natural log, Eigen et
    al.), delta1..3 (max(p/t, t/p) < 1.25^k), mae, and mae_<c> for each cut-off c: the mean
    absolute error over pixels whose ground truth is at most c metres, the MVSEC convention of
    E2Depth / RAM-Net / GEP (10, 20, 30 m).

    Averaging is per pixel over the whole data set (every valid pixel weighs the same, and the
    result is batching-independent). GEP instead averages per-batch means over batches, which
    depends on batch size; per-image averaging would weight sparse images more. GEP also
    clamps out-of-range ground truth to the bounds (ours excludes it) and uses log1p in
    rmse_log; defaults 0.1-30 m are GEP's MVSEC evaluation bounds.
    """

    _BASE = ('count', 'abs_rel', 'sq_rel', 'sq_err', 'sq_log_err', 'abs_err',
             'delta1', 'delta2', 'delta3')

    def __init__(self, cutoffs=(10, 20, 30), min_depth=0.1, max_depth=30.0, device=None):
        if not min_depth > 0:
            raise ValueError('min_depth must be > 0 so that log depth is defined')
        self.cutoffs = tuple(float(c) for c in cutoffs)
        self.min_depth = float(min_depth)
        self.max_depth = math.inf if max_depth is None else float(max_depth)
        super().__init__(len(self._BASE) + 2 * len(self.cutoffs), device)

    def _config(self):
        return {'cutoffs': self.cutoffs, 'min_depth': self.min_depth,
                'max_depth': self.max_depth}

    @torch.no_grad()
    def update(self, pred_depth, target_depth, valid=None):
        """Add a batch: pred_depth and target_depth metric, valid optional bool, same shape."""
        if pred_depth.shape != target_depth.shape or (
                valid is not None and valid.shape != target_depth.shape):
            raise ValueError('pred_depth, target_depth and valid must have the same shape')
        target = target_depth.to(self.sums.device, torch.float64)
        mask = torch.isfinite(target) & (target >= self.min_depth) & (target <= self.max_depth)
        mask &= target > 0
        if valid is not None:
            mask &= valid.to(self.sums.device).bool()
        t = target[mask]
        p = pred_depth.to(self.sums.device, torch.float64)[mask]
        p = p.clamp(self.min_depth, self.max_depth)
        abs_err = (p - t).abs()
        ratio = torch.maximum(p / t, t / p)
        values = [
            torch.tensor(float(t.numel()), dtype=torch.float64, device=t.device),
            (abs_err / t).sum(),
            ((p - t) ** 2 / t).sum(),
            ((p - t) ** 2).sum(),
            ((p.log() - t.log()) ** 2).sum(),
            abs_err.sum(),
        ]
        values += [(ratio < 1.25 ** k).sum().double() for k in (1, 2, 3)]
        for cutoff in self.cutoffs:
            near = t <= cutoff
            values += [near.sum().double(), abs_err[near].sum()]
        self.sums += torch.stack(values)

    def compute(self):
        """Return {metric name: float}; NaN everywhere when no valid pixel was seen."""
        sums = self.sums.tolist()
        base = dict(zip(self._BASE, sums))
        count = base['count']

        def ratio(num, den):
            return num / den if den > 0 else math.nan

        result = {
            'abs_rel': ratio(base['abs_rel'], count),
            'sq_rel': ratio(base['sq_rel'], count),
            'rmse': math.sqrt(ratio(base['sq_err'], count)),
            'rmse_log': math.sqrt(ratio(base['sq_log_err'], count)),
            'mae': ratio(base['abs_err'], count),
            'delta1': ratio(base['delta1'], count),
            'delta2': ratio(base['delta2'], count),
            'delta3': ratio(base['delta3'], count),
        }
        offset = len(self._BASE)
        for i, cutoff in enumerate(self.cutoffs):
            near_count, near_abs = sums[offset + 2 * i], sums[offset + 2 * i + 1]
            result[f'mae_{cutoff:g}'] = ratio(near_abs, near_count)
        result['count'] = count
        return result


class SegmentationMetrics(_SumAccumulator):
    """Semantic segmentation metrics from a data-set-wide confusion matrix.

    confusion[g, p] counts pixels of ground-truth class g predicted as p; pixels labelled
    ignore_index are left out. IoU_c = TP / (TP + FP + FN); classes whose union is 0 (absent
    from both ground truth and prediction over the whole data set) get NaN and are excluded
    from mIoU. GEP's IOU gives them NaN too but then takes a plain mean, which is NaN unless
    every class occurs. Class accuracy TP / (TP + FN) is NaN for classes absent from the ground
    truth and excluded from the mean. If ignore_index is itself a class id in range, that
    class is excluded from both means.
    """

    def __init__(self, num_classes, ignore_index=255, device=None):
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        super().__init__(self.num_classes ** 2, device)

    @property
    def confusion(self):
        """(C, C) float64 view of the sums: rows ground truth, columns prediction."""
        return self.sums.view(self.num_classes, self.num_classes)

    def _config(self):
        return {'num_classes': self.num_classes, 'ignore_index': self.ignore_index}

    @torch.no_grad()
    def update(self, pred, target):
        """Add a batch: pred labels (B, *S) or logits (B, C, *S); target labels (B, *S)."""
        if pred.dim() == target.dim() + 1:
            pred = pred.argmax(dim=1)
        if pred.shape != target.shape:
            raise ValueError(f'pred {tuple(pred.shape)} and target {tuple(target.shape)} differ')
        pred = pred.to(self.sums.device).long().flatten()
        target = target.to(self.sums.device).long().flatten()
        keep = target != self.ignore_index
        pred, target = pred[keep], target[keep]
        classes = self.num_classes
        out_of_range = (target < 0) | (target >= classes) | (pred < 0) | (pred >= classes)
        if out_of_range.any():
            raise ValueError(f'labels outside [0, {classes}) that are not ignore_index')
        counts = torch.bincount(target * classes + pred, minlength=classes * classes)
        self.sums += counts.double()

    def compute(self):
        """Return miou, mean_class_acc, pixel_acc (floats) and iou, class_acc ((C,) float64)."""
        confusion = self.confusion.cpu()
        true_pos = confusion.diagonal()
        gt_count = confusion.sum(dim=1)
        union = gt_count + confusion.sum(dim=0) - true_pos
        nan = torch.tensor(math.nan, dtype=torch.float64)
        iou = torch.where(union > 0, true_pos / union.clamp_min(1), nan)
        class_acc = torch.where(gt_count > 0, true_pos / gt_count.clamp_min(1), nan)
        if isinstance(self.ignore_index, int) and 0 <= self.ignore_index < self.num_classes:
            iou[self.ignore_index] = math.nan
            class_acc[self.ignore_index] = math.nan
        total = confusion.sum().item()
        return {
            'miou': iou.nanmean().item(),
            'mean_class_acc': class_acc.nanmean().item(),
            'pixel_acc': true_pos.sum().item() / total if total > 0 else math.nan,
            'iou': iou,
            'class_acc': class_acc,
        }
