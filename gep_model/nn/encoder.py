"""The event encoder: a timm ViT with the image teacher's architecture, plus multi-level taps.

GEP initialises the event encoder from the teacher (e.g. DINOv2 ViT-S/14 with 4 registers) and
feeds it the event window rendered as an image. Representations with other than 3 channels
(voxel grids, stacked histograms) go through a 1x1 input adapter first, so the teacher's
patch embedding is kept as it is and its weights load unchanged.
"""

import timm
from timm.models.vision_transformer import VisionTransformer
import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def build_vit(cfg, input_size):
    """Build the timm ViT described by an EncoderConfig (never downloads weights)."""
    common = {'img_size': tuple(input_size), 'num_classes': 0, 'dynamic_img_size': False}
    if cfg.arch:
        vit = timm.create_model(cfg.arch, pretrained=False, **common)
        if vit.embed_dim != cfg.embed_dim or len(vit.blocks) != cfg.depth:
            raise ValueError(f'{cfg.arch} has width {vit.embed_dim} and depth '
                             f'{len(vit.blocks)}, the config says {cfg.embed_dim} and {cfg.depth}')
        return vit
    # DINOv2-with-registers layout at custom size (the tiny test variant).
    return VisionTransformer(patch_size=cfg.patch_size, embed_dim=cfg.embed_dim,
                             depth=cfg.depth, num_heads=cfg.num_heads, reg_tokens=cfg.reg_tokens,
                             no_embed_class=True, init_values=1e-5, **common)


class ViTEncoder(nn.Module):
    """Encode a (B, C, H, W) image-like tensor into tokens and multi-level feature maps."""

    def __init__(self, cfg, input_size):
        super().__init__()
        self.cfg = cfg
        self.adapter = nn.Conv2d(cfg.in_chans, 3, 1) if cfg.in_chans != 3 else nn.Identity()
        # RGB-like inputs in [0, 1] (frames, GEP's event image) get the ImageNet statistics the
        # DINOv2 teacher was trained with; other representations meet a learned adapter.
        # Statistics given in the config (GEP's per-data-set ones) replace these.
        rgb = cfg.in_chans == 3
        mean = cfg.mean if cfg.mean is not None else IMAGENET_MEAN if rgb else (0.0,) * 3
        std = cfg.std if cfg.std is not None else IMAGENET_STD if rgb else (1.0,) * 3
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f'encoder mean {tuple(mean)} / std {tuple(std)}: need 3 values '
                             'each (the ViT input), std > 0')
        self.register_buffer('mean', torch.tensor(mean, dtype=torch.float32)
                             .view(1, 3, 1, 1), persistent=False)
        self.register_buffer('std', torch.tensor(std, dtype=torch.float32)
                             .view(1, 3, 1, 1), persistent=False)
        self.vit = build_vit(cfg, input_size)
        self.num_prefix_tokens = self.vit.num_prefix_tokens
        if max(cfg.feature_blocks) >= cfg.depth:
            raise ValueError(f'feature_blocks {cfg.feature_blocks} exceed the depth {cfg.depth}')

    def forward(self, x):
        """Return (tokens (B, P + N, D) after the final norm, [4 x (B, D, h, w)] features).

        P prefix tokens (class token and registers) come first, then N = h * w patch tokens.
        The features are the outputs of `feature_blocks`, each through the ViT's final norm,
        as the authors' heads read them (get_intermediate_layers(norm=True), src/seg.py:703).
        """
        x = (self.adapter(x) - self.mean) / self.std
        tokens, features = self.vit.forward_intermediates(
            x, indices=list(self.cfg.feature_blocks), norm=True, output_fmt='NCHW')
        return tokens, features

    def patch_embed(self, x):
        """Return the patch embeddings (B, N, D), the stage-1 loss's second target."""
        return self.vit.patch_embed((self.adapter(x) - self.mean) / self.std)

    def load_teacher(self, state_dict):
        """Load teacher ViT weights (a timm state dict) into the ViT; return missing keys."""
        result = self.vit.load_state_dict(state_dict, strict=False)
        return result.missing_keys, result.unexpected_keys


def patch_tokens(tokens, num_prefix_tokens):
    """Split encoder tokens into (prefix (B, P, D), patches (B, N, D))."""
    return tokens[:, :num_prefix_tokens], tokens[:, num_prefix_tokens:]


def grid_pooling_matrix(grid, pool_grid):
    """Return the (K, h*w) matrix averaging a patch grid into pool cells plus one mean token.

    K = gh * gw + 1 (or h * w + 1 with pool_grid None). A fixed matrix instead of adaptive
    pooling keeps the graph exportable (ONNX has no adaptive pooling of uneven sizes).
    """
    h, w = grid
    n = h * w
    rows = []
    if pool_grid is None:
        rows.append(torch.eye(n))
    else:
        gh, gw = pool_grid
        if gh > h or gw > w:
            raise ValueError(f'pool_grid {pool_grid} is finer than the patch grid {grid}')
        ys = torch.arange(h) * gh // h  # cell row of each patch row
        xs = torch.arange(w) * gw // w
        cell = (ys[:, None] * gw + xs[None, :]).reshape(-1)  # (h*w,)
        onehot = torch.nn.functional.one_hot(cell, gh * gw).T.float()  # (gh*gw, h*w)
        rows.append(onehot / onehot.sum(dim=1, keepdim=True))
    rows.append(torch.full((1, n), 1.0 / n))
    return torch.cat(rows, dim=0)
