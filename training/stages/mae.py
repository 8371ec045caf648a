"""A masked autoencoder (He et al., CVPR 2022) around the event encoder's ViT architecture.

Where no image foundation model can be downloaded, the teacher that stage align distils is
trained here on frames alone, self-supervised: a random 75% of the patches are hidden, the
encoder (a ViTEncoder, the teacher architecture GEP expects) sees the visible quarter plus
its prefix tokens (class token, registers), and a light decoder reconstructs the hidden
patches' pixels, each patch normalised by its own mean and variance (MAE's `norm_pix_loss`).
Only the encoder is kept. The objective reads images only: it has no argument through which
depth or labels could reach it.
"""

from timm.models.vision_transformer import Block
import torch
from torch import nn
import torch.nn.functional as F


def patchify(images, patch):
    """(B, C, H, W) -> (B, N, patch * patch * C), patches row by row (H, W multiples of patch)."""
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch) * (w // patch), patch * patch * c)


def random_keep(batch, num_patches, keep, generator=None, device=None):
    """Return (ids_keep (B, keep), mask (B, N) float: 1 where hidden) of a random subset."""
    noise = torch.rand(batch, num_patches, generator=generator, device=device)
    order = noise.argsort(dim=1)
    ids_keep = order[:, :keep]
    mask = torch.ones(batch, num_patches, device=device)
    mask.scatter_(1, ids_keep, 0.0)
    return ids_keep, mask


class MaskedAutoencoder(nn.Module):
    """MAE objective: `forward(images)` -> (loss, pred (B, N, p*p*3), mask (B, N))."""

    def __init__(self, encoder, mask_ratio=0.75, decoder_dim=32, decoder_depth=1,
                 decoder_heads=2):
        super().__init__()
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f'mask_ratio must lie in (0, 1), got {mask_ratio}')
        self.encoder = encoder  # a ViTEncoder on 3-channel images
        vit = encoder.vit
        self.patch = vit.patch_embed.patch_size[0]
        self.grid = tuple(vit.patch_embed.grid_size)
        self.num_patches = self.grid[0] * self.grid[1]
        self.keep = max(int(round(self.num_patches * (1.0 - mask_ratio))), 1)
        self.mask_ratio = mask_ratio
        dim = vit.embed_dim
        self.decoder_embed = nn.Linear(dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.decoder_pos = nn.Parameter(torch.zeros(1, self.num_patches, decoder_dim))
        self.decoder = nn.Sequential(*[Block(decoder_dim, decoder_heads, mlp_ratio=4.0)
                                       for _ in range(decoder_depth)])
        self.decoder_norm = nn.LayerNorm(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, self.patch * self.patch * 3)
        nn.init.normal_(self.mask_token, std=0.02)
        nn.init.normal_(self.decoder_pos, std=0.02)

    def normalise(self, images):
        """Images in [0, 1] -> the encoder's input statistics (as ViTEncoder.forward does)."""
        enc = self.encoder
        return (enc.adapter(images) - enc.mean) / enc.std

    def encode_visible(self, x, ids_keep):
        """Encode the kept patches: x (B, 3, H, W) normalised, ids_keep (B, K) -> (B, P+K, D)."""
        vit = self.encoder.vit
        tokens = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(x))))
        prefix = vit.num_prefix_tokens
        patches = tokens[:, prefix:]
        visible = torch.gather(patches, 1, ids_keep[..., None].expand(-1, -1, patches.shape[-1]))
        return vit.norm(vit.blocks(torch.cat([tokens[:, :prefix], visible], dim=1)))

    def decode(self, latent, ids_keep):
        """Predict every patch's pixels from the visible tokens: (B, N, p*p*3)."""
        prefix = self.encoder.vit.num_prefix_tokens
        x = self.decoder_embed(latent[:, prefix:])  # (B, K, Dd)
        b, _, d = x.shape
        full = self.mask_token.expand(b, self.num_patches, d).clone()
        full = full.scatter(1, ids_keep[..., None].expand(-1, -1, d), x)
        return self.decoder_pred(self.decoder_norm(self.decoder(full + self.decoder_pos)))

    def forward(self, images, generator=None):
        """Return (loss, pred (B, N, p*p*3), mask (B, N), 1 = hidden) for images (B, 3, H, W).

        Images lie in [0, 1]. The loss is the mean squared error on the hidden patches only,
        against each patch's pixels normalised by the patch's own mean and variance.
        """
        x = self.normalise(images)
        ids_keep, mask = random_keep(x.shape[0], self.num_patches, self.keep, generator,
                                     x.device)
        pred = self.decode(self.encode_visible(x, ids_keep), ids_keep)
        target = patchify(x, self.patch)
        mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
        target = (target - mean) / (var + 1e-6).sqrt()
        per_patch = ((pred - target) ** 2).mean(-1)  # (B, N)
        loss = (per_patch * mask).sum() / mask.sum()
        return loss, pred, mask


def augment_frames(images, generator, min_scale=0.35):
    """Apply MAE's augmentation per image: a random resized crop and a horizontal flip.

    images: (B, 3, H, W) in [0, 1]; the crop keeps between min_scale and all of the area
    with an aspect ratio within [3/4, 4/3] of the image's, resized back to (H, W).
    """
    b, _, h, w = images.shape
    out = torch.empty_like(images)
    for i in range(b):
        area = float(torch.empty(()).uniform_(min_scale, 1.0, generator=generator))
        ratio = float(torch.empty(()).uniform_(-0.2877, 0.2877, generator=generator).exp())
        ch = min(h, max(int(round(h * (area / ratio) ** 0.5)), 1))
        cw = min(w, max(int(round(w * (area * ratio) ** 0.5)), 1))
        top = int(torch.randint(0, h - ch + 1, (), generator=generator))
        left = int(torch.randint(0, w - cw + 1, (), generator=generator))
        crop = images[i:i + 1, :, top:top + ch, left:left + cw]
        crop = F.interpolate(crop, size=(h, w), mode='bilinear', align_corners=False)
        if bool(torch.rand((), generator=generator) < 0.5):
            crop = crop.flip(-1)
        out[i] = crop[0]
    return out
