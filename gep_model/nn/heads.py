"""Task heads on multi-level encoder features fused with the temporal context.

Depth is DPT-like: the four feature levels (all at patch stride) are reassembled to strides
of 1/4, 1/2, 1 and 2 patches, fused coarse to fine with residual conv units, and the head
predicts log depth squashed into [log min_depth, log max_depth], so depth in metres is always
within the configured range. Segmentation is the authors' UPerNet on the four levels, with an
auxiliary FCN head that only training uses (the fine-tuning objective owns it, so deployed
weights and exported graphs do not carry it). Recognition is a linear classifier on pooled
tokens.
"""

import math

import torch
from torch import nn
import torch.nn.functional as F

SCALES = (4, 2, 1, 0.5)  # depth: resampling of the four feature levels, finest first


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


def pool_to(x, cells):
    """Average (B, C, h, w) into (B, C, cells, cells) with fixed kernels (exportable).

    The authors' deterministic stand-in for adaptive pooling (src/seg.py:192): pad by
    replication to a multiple of `cells`, then average equal blocks. ONNX has no adaptive
    pooling of uneven sizes; this is plain padding and average pooling at static sizes.
    """
    h, w = x.shape[-2:]
    pad_h, pad_w = (-h) % cells, (-w) % cells
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode='replicate')
    kernel = ((h + pad_h) // cells, (w + pad_w) // cells)
    return F.avg_pool2d(x, kernel, stride=kernel)


class ConvBNAct(nn.Sequential):
    """Convolution, batch norm, GELU: the unit of the authors' UPerNet (src/seg.py:217)."""

    def __init__(self, in_dim, out_dim, kernel=3):
        super().__init__(nn.Conv2d(in_dim, out_dim, kernel, padding=kernel // 2, bias=False),
                         nn.BatchNorm2d(out_dim), nn.GELU())


class PyramidPooling(nn.Module):
    """PSP pooling of the coarsest level: (B, D, h, w) -> (B, (len(scales) + 1) * C, h, w)."""

    def __init__(self, in_dim, width, scales=(1, 2, 3, 6)):
        super().__init__()
        self.scales = tuple(scales)
        self.base = ConvBNAct(in_dim, width, 1)
        self.branches = nn.ModuleList(ConvBNAct(in_dim, width, 1) for _ in self.scales)

    def forward(self, x):
        outs = [self.base(x)]
        for cells, branch in zip(self.scales, self.branches):
            outs.append(F.interpolate(branch(pool_to(x, cells)), size=x.shape[-2:],
                                      mode='bilinear', align_corners=False))
        return torch.cat(outs, dim=1)


class UPerNetHead(nn.Module):
    """UPerNet on the four ViT feature levels -> class logits (B, K, H, W).

    As the authors run it on a ViT (src/seg.py:273, ECDDPUPerHead with patch_size P): every
    level is at patch stride, so the FPN adds without resampling; PSP pooling (1, 2, 3, 6)
    on the deepest level, lateral 1x1 and FPN 3x3 ConvBNAct, the four maps fused by a 3x3
    ConvBNAct, dropout 0.1, then a 1x1 convolution to K * P * P channels and a pixel shuffle
    back to pixel resolution (a learned P x P upsampling), bilinear to the input size.
    """

    def __init__(self, in_dim, width, num_classes, patch_size, levels=4, dropout=0.1):
        super().__init__()
        self.ppm = PyramidPooling(in_dim, width)
        self.ppm_out = ConvBNAct(width * (len(self.ppm.scales) + 1), width, 3)
        self.lateral = nn.ModuleList(ConvBNAct(in_dim, width, 1) for _ in range(levels - 1))
        self.fpn = nn.ModuleList(ConvBNAct(width, width, 3) for _ in range(levels - 1))
        self.fuse = ConvBNAct(width * levels, width, 3)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Sequential(nn.Conv2d(width, num_classes * patch_size ** 2, 1),
                                        nn.PixelShuffle(patch_size))

    def forward(self, features, size):
        """features: levels (B, D, h, w), finest (shallowest block) first; size: (H, W)."""
        laterals = [conv(f) for conv, f in zip(self.lateral, features[:-1])]
        laterals.append(self.ppm_out(self.ppm(features[-1])))
        for i in range(len(laterals) - 1, 0, -1):  # top-down; all levels share one size
            laterals[i - 1] = laterals[i - 1] + laterals[i]
        outs = [conv(x) for conv, x in zip(self.fpn, laterals[:-1])] + [laterals[-1]]
        x = self.dropout(self.fuse(torch.cat(outs, dim=1)))
        return F.interpolate(self.classifier(x), size=size, mode='bilinear',
                             align_corners=False)


class FCNAuxHead(nn.Module):
    """The auxiliary FCN head on one feature level (src/seg.py:335): training only."""

    def __init__(self, in_dim, width, num_classes, dropout=0.1):
        super().__init__()
        self.block = nn.Sequential(ConvBNAct(in_dim, width, 3), nn.Dropout2d(dropout),
                                   nn.Conv2d(width, num_classes, 1))

    def forward(self, feature, size):
        """Map a feature level (B, D, h, w) to logits (B, K, H, W)."""
        return F.interpolate(self.block(feature), size=size, mode='bilinear',
                             align_corners=False)


class ClassificationHead(nn.Module):
    """Linear classifier on the class token and the window's mean context token."""

    def __init__(self, token_dim, context_dim, num_categories):
        super().__init__()
        self.norm = nn.LayerNorm(token_dim + context_dim)
        self.fc = nn.Linear(token_dim + context_dim, num_categories)

    def forward(self, cls_token, context_mean):
        return self.fc(self.norm(torch.cat((cls_token, context_mean), dim=-1)))
