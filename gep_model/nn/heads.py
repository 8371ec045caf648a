"""Task heads on multi-level encoder features fused with the temporal context.

Depth is DPT-like: the four feature levels (all at patch stride) are reassembled to strides
of 1/4, 1/2, 1 and 2 patches, fused coarse to fine with residual conv units, and the head
predicts log depth squashed into [log min_depth, log max_depth], so depth in metres is always
within the configured range. Segmentation is an FPN-lite on its own reassembled pyramid.
Recognition is a linear classifier on pooled tokens.
"""

import math

import torch
from torch import nn
import torch.nn.functional as F

SCALES = (4, 2, 1, 0.5)  # resampling of the four feature levels, finest first


def resample(width, scale):
    if scale > 1:
        return nn.ConvTranspose2d(width, width, int(scale), stride=int(scale))
    if scale == 1:
        return nn.Identity()
    return nn.Conv2d(width, width, 3, stride=2, padding=1)


class Reassemble(nn.Module):
    """Project each of the four (B, D, h, w) levels to `width` channels at its own scale."""

    def __init__(self, in_dim, width):
        super().__init__()
        self.proj = nn.ModuleList(nn.Conv2d(in_dim, width, 1) for _ in SCALES)
        self.resample = nn.ModuleList(resample(width, s) for s in SCALES)

    def forward(self, features):
        return [r(p(f)) for f, p, r in zip(features, self.proj, self.resample)]


class ResidualConvUnit(nn.Module):
    """Two 3x3 convolutions with a skip connection (DPT's refinement unit)."""

    def __init__(self, width):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x):
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class Fusion(nn.Module):
    """Upsample the coarser map to the skip's size, add the refined skip, refine again."""

    def __init__(self, width):
        super().__init__()
        self.skip = ResidualConvUnit(width)
        self.out = ResidualConvUnit(width)

    def forward(self, coarse, skip):
        up = F.interpolate(coarse, size=skip.shape[-2:], mode='bilinear', align_corners=False)
        return self.out(up + self.skip(skip))


class DepthHead(nn.Module):
    """Multi-level features -> (log depth, depth in metres), each (B, 1, H, W)."""

    def __init__(self, in_dim, width, min_depth, max_depth):
        super().__init__()
        if not 0 < min_depth < max_depth:
            raise ValueError(f'depth range [{min_depth}, {max_depth}] must satisfy 0 < min < max')
        self.reassemble = Reassemble(in_dim, width)
        self.fusion = nn.ModuleList(Fusion(width) for _ in SCALES[:-1])
        self.top = ResidualConvUnit(width)
        self.out = nn.Sequential(nn.Conv2d(width, width // 2, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(width // 2, 1, 1))
        self.log_min = math.log(min_depth)
        self.log_max = math.log(max_depth)

    def forward(self, features, size):
        levels = self.reassemble(features)
        x = self.top(levels[-1])
        for fusion, skip in zip(self.fusion, reversed(levels[:-1])):
            x = fusion(x, skip)
        z = F.interpolate(self.out(x), size=size, mode='bilinear', align_corners=False)
        log_depth = self.log_min + torch.sigmoid(z) * (self.log_max - self.log_min)
        return log_depth, torch.exp(log_depth)


class SegmentationHead(nn.Module):
    """Multi-level features -> class logits (B, K, H, W) through a top-down FPN."""

    def __init__(self, in_dim, width, num_classes):
        super().__init__()
        self.reassemble = Reassemble(in_dim, width)
        self.smooth = nn.ModuleList(nn.Sequential(nn.Conv2d(width, width, 3, padding=1),
                                                  nn.ReLU()) for _ in SCALES[:-1])
        self.classifier = nn.Conv2d(width, num_classes, 1)

    def forward(self, features, size):
        levels = self.reassemble(features)
        x = levels[-1]
        for smooth, skip in zip(self.smooth, reversed(levels[:-1])):
            x = smooth(skip + F.interpolate(x, size=skip.shape[-2:], mode='bilinear',
                                            align_corners=False))
        return F.interpolate(self.classifier(x), size=size, mode='bilinear', align_corners=False)


class ClassificationHead(nn.Module):
    """Linear classifier on the class token and the window's mean context token."""

    def __init__(self, token_dim, context_dim, num_categories):
        super().__init__()
        self.norm = nn.LayerNorm(token_dim + context_dim)
        self.fc = nn.Linear(token_dim + context_dim, num_categories)

    def forward(self, cls_token, context_mean):
        return self.fc(self.norm(torch.cat((cls_token, context_mean), dim=-1)))
