"""Replay evaluation: ground truth read from bags, matched to outputs by stamp, and scored.

Depth (32FC1 metres or 16UC1 millimetres) and labels (mono8) come from their own topics;
each output takes the ground truth with its stamp, or the nearest within half the ground
truth's frame period, and gep_model.metrics accumulates per pixel over the whole bag.
"""

from collections import deque
import statistics

import numpy as np

from gep_model.metrics import DepthMetrics, SegmentationMetrics

from .outputs import resize_depth, resize_labels
from .topics import depth_metres, label_ids
from .wire.image import decode_image

CUTOFFS = (10, 20, 30)  # metres: the MVSEC cut-offs of E2Depth, RAM-Net and GEP


def decode_ground_truth(kind, data, num_classes):
    """Decode a GT image: depth float32 metres (NaN invalid), or labels uint8 (255 ignored).

    Raises WireError for bytes that do not decode or an encoding of the wrong kind.
    """
    image = decode_image(data)
    if kind == 'depth':
        return image.header.stamp_ns, depth_metres(image, 'depth ground truth')
    labels = label_ids(image, 'label ground truth')
    labels[labels >= num_classes] = 255
    return image.header.stamp_ns, labels


class GroundTruthMatch:
    """Pair predictions with ground truth by stamp and accumulate the metrics.

    Ground truth of each kind (depth, labels) is kept by stamp for a short while; a
    prediction takes the exact stamp, else the nearest one within half the ground truth's
    frame period (the median spacing of its stamps), and waits until no nearer one can
    arrive. Outputs arrive in stamp order, so older ground truth is forgotten.
    """

    def __init__(self, kinds, class_names, depth_range, keep=256):
        self.kinds = tuple(kinds)
        self.class_names = list(class_names)
        self.depth = DepthMetrics(CUTOFFS, *depth_range)
        self.segmentation = SegmentationMetrics(len(self.class_names), ignore_index=255)
        self.gt = {k: {} for k in self.kinds}  # kind -> {stamp: array}
        self.spacing = {k: deque(maxlen=32) for k in self.kinds}
        self.last = dict.fromkeys(self.kinds)  # newest GT stamp per kind
        self.pending = deque()  # (stamp, {'depth': ..., 'labels': ...})
        self.keep = keep
        self.frames = dict.fromkeys(self.kinds, 0)  # predictions matched, per kind
        self.unmatched = dict.fromkeys(self.kinds, 0)
        self.gt_valid_pixels = 0  # depth GT pixels in range, to report prediction coverage

    def tolerance(self, kind):
        steps = self.spacing[kind]
        return statistics.median(steps) // 2 if steps else 0

    def add_gt(self, kind, stamp, array):
        last = self.last[kind]
        if last is not None and stamp > last:
            self.spacing[kind].append(stamp - last)
        self.last[kind] = stamp if last is None else max(stamp, last)
        table = self.gt[kind]
        table[stamp] = array
        while len(table) > self.keep:
            del table[min(table)]

    def add_prediction(self, stamp, prediction):
        self.pending.append((stamp, prediction))

    def _ready(self, kind, stamp, final):
        if final or stamp in self.gt[kind]:
            return True
        last = self.last[kind]
        return len(self.spacing[kind]) > 0 and last >= stamp + self.tolerance(kind)

    def _nearest(self, kind, stamp):
        table = self.gt[kind]
        if stamp in table:
            return table[stamp]
        tol = self.tolerance(kind)
        near = [s for s in table if abs(s - stamp) <= tol]
        return table[min(near, key=lambda s: (abs(s - stamp), s))] if near else None

    def resolve(self, final=False):
        """Evaluate the predictions whose match is settled; return [(stamp, pred, gt)]."""
        done = []
        while self.pending and all(self._ready(k, self.pending[0][0], final or
                                               len(self.pending) > self.keep)
                                   for k in self.kinds):
            stamp, prediction = self.pending.popleft()
            truth = {k: self._nearest(k, stamp) for k in self.kinds}
            self._update(prediction, truth)
            done.append((stamp, prediction, truth))
            for kind in self.kinds:
                old = stamp - self.tolerance(kind)
                for s in [s for s in self.gt[kind] if s < old]:
                    del self.gt[kind][s]
        return done

    def _update(self, prediction, truth):
        import torch
        for kind in self.kinds:
            if truth[kind] is None or prediction.get(kind) is None:
                self.unmatched[kind] += 1
                continue
            self.frames[kind] += 1
            target = truth[kind]
            if kind == 'depth':
                pred = resize_depth(prediction['depth'], target.shape)
                t = torch.from_numpy(target)[None]
                self.depth.update(torch.from_numpy(pred)[None], t,
                                  torch.from_numpy(np.isfinite(pred))[None])
                lo, hi = self.depth.min_depth, self.depth.max_depth
                self.gt_valid_pixels += int(((target >= lo) & (target <= hi)).sum())
            else:
                pred = resize_labels(prediction['labels'], target.shape)
                self.segmentation.update(torch.from_numpy(pred.astype(np.int64))[None],
                                         torch.from_numpy(target.astype(np.int64))[None])

    def metrics(self):
        """Return the report's `metrics`: depth and segmentation, where GT was matched."""
        out = {}
        if 'depth' in self.kinds and self.frames['depth']:
            depth = self.depth.compute()
            depth['pixels'] = int(depth.pop('count'))
            depth['coverage'] = depth['pixels'] / self.gt_valid_pixels \
                if self.gt_valid_pixels else None
            depth.update(frames=self.frames['depth'], unmatched=self.unmatched['depth'],
                         min_depth=self.depth.min_depth, max_depth=self.depth.max_depth,
                         cutoffs=list(CUTOFFS))
            out['depth'] = depth
        if 'labels' in self.kinds and self.frames['labels']:
            seg = self.segmentation.compute()
            seg['iou'] = dict(zip(self.class_names, seg['iou'].tolist()))
            seg['class_acc'] = dict(zip(self.class_names, seg['class_acc'].tolist()))
            seg.update(frames=self.frames['labels'], unmatched=self.unmatched['labels'],
                       num_classes=len(self.class_names))
            out['segmentation'] = seg
        return out
