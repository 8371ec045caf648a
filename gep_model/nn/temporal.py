"""GEP's temporal backbone: a causal transformer over per-window tokens, with a KV cache.

The sequence interleaves, window by window, the event tokens of a window and then (when a
frame exists) the image tokens of the same instant, as GEP stage 2 does. Each token gets a
modality embedding (event 0, image 1), a temporal position (its window index) and a slot
position (its index within the window). Blocks are pre-norm with a SwiGLU MLP (timm's),
attention is causal token by token, and tokens marked invalid (a window without a frame)
are never attended to.

Streaming: `forward` also returns each layer's keys and values of the new tokens, so the
robot feeds one window at a time against a cache of earlier ones and gets exactly what the
full-sequence forward gives (the tests check it). The cache has a fixed size (max_windows
windows) and shifts left as new tokens arrive, so the step has static shapes and exports.
"""

from timm.layers import SwiGLU
import torch
from torch import nn
import torch.nn.functional as F

EVENT, IMAGE = 0, 1
AGGREGATE_GROUP = 8  # GEP's images_per_group (gpt.py:113-118)


def interleave_windows(event_tokens, image_tokens=None, has_image=None):
    """Order per-window token sets as GEP's stage 2 does: events, then the frame, per window.

    event_tokens, image_tokens: (B, T, N, D) (image_tokens None: events only); has_image:
    (B, T) bool or None (all frames present). Returns (chunks (B, C, N, D), modality (B, C)
    long, window (B, C) long, valid (B, C) bool), C = T or 2 T: one chunk per window and
    modality, a missing frame's chunk marked invalid (GEP's SequenceDataset, dataset.py:
    1301-1307, always has both).
    """
    b, t = event_tokens.shape[:2]
    device = event_tokens.device
    window = torch.arange(t, device=device)[None].expand(b, -1)
    if image_tokens is None:
        return (event_tokens, torch.full((b, t), EVENT, dtype=torch.long, device=device),
                window, torch.ones(b, t, dtype=torch.bool, device=device))
    if has_image is None:
        has_image = torch.ones(b, t, dtype=torch.bool, device=device)
    chunks = torch.stack((event_tokens, image_tokens), dim=2).flatten(1, 2)  # (B, 2T, N, D)
    modality = torch.tensor([EVENT, IMAGE], device=device).repeat(t)[None].expand(b, -1)
    valid = torch.stack((torch.ones_like(has_image, dtype=torch.bool), has_image.bool()),
                        dim=2).flatten(1, 2)
    return chunks, modality, window.repeat_interleave(2, dim=1), valid


def spatiotemporal_aggregate(chunks, modality, window, valid, group=AGGREGATE_GROUP):
    """Reduce window chunks as GEP's stage 2 does (utils.spatiotemporal_aggregate, :69-209).

    chunks: (B, C, N, D), the sequence cut into C chunks of one window's N patch tokens
    each (`interleave_windows`); modality, window (B, C) long; valid (B, C) bool. Chunks go
    in groups of `group` consecutive ones (the last group padded with invalid chunks); each
    group becomes N temporal means (patch n averaged over the group's valid chunks) followed
    by `group` spatial means (each chunk's mean over its N patches).

    Returns (tokens (B, L, D), modality, window, slot (B, L) long, valid (B, L) bool),
    L = G (N + group), G = ceil(C / group). A temporal mean takes the majority modality of
    its group's valid chunks, ties going to the image (GEP's argmax over its ids, image 1
    before event 2), the group's first window and slot n; a spatial mean keeps its chunk's
    modality and window and takes slot N, the window-mean slot of `GEPModel.step_layout`
    with all patches (pool_grid None). Outputs without a valid input stay in place, marked
    invalid, where GEP's code drops them and pads the end: positions here come from the
    window and slot, not from the index in the sequence.
    """
    b, c, n, d = chunks.shape
    groups = -(-c // group)
    pad = groups * group - c
    if pad:
        chunks = torch.cat((chunks, chunks.new_zeros(b, pad, n, d)), dim=1)
        modality = torch.cat((modality, modality.new_full((b, pad), EVENT)), dim=1)
        window = torch.cat((window, window[:, -1:].expand(-1, pad)), dim=1)
        valid = torch.cat((valid, valid.new_zeros(b, pad)), dim=1)
    chunks = chunks.view(b, groups, group, n, d)
    modality, window, valid = (x.view(b, groups, group) for x in (modality, window, valid))
    weight = valid.to(chunks.dtype)  # (B, G, g)
    count = weight.sum(dim=2)  # (B, G)
    temporal = (chunks * weight[..., None, None]).sum(dim=2) / count.clamp_min(1)[..., None, None]
    spatial = chunks.mean(dim=3) * weight[..., None]  # (B, G, g, D)
    images = (valid & (modality == IMAGE)).sum(dim=2)
    events = (valid & (modality == EVENT)).sum(dim=2)
    majority = torch.where(images >= events, IMAGE, EVENT)  # (B, G)
    tokens = torch.cat((temporal, spatial), dim=2).flatten(1, 2)  # (B, G (N + g), D)
    out_modality = torch.cat((majority[..., None].expand(-1, -1, n), modality), dim=2)
    out_window = torch.cat((window[..., :1].expand(-1, -1, n), window), dim=2)
    slot = torch.cat((torch.arange(n, device=chunks.device).expand(b, groups, n),
                      torch.full((b, groups, group), n, device=chunks.device)), dim=2)
    out_valid = torch.cat(((count > 0)[..., None].expand(-1, -1, n), valid), dim=2)
    return (tokens, out_modality.flatten(1), out_window.flatten(1), slot.flatten(1),
            out_valid.flatten(1))


def swiglu_hidden(dim, ratio, multiple_of=256):
    """Return GEP's SwiGLU width: 2/3 of ratio * dim, rounded up to a multiple of 256."""
    hidden = int(2 * ratio * dim / 3)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


class CausalAttention(nn.Module):
    """Multi-head self-attention with an explicit mask and past keys and values."""

    def __init__(self, dim, num_heads):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'width {dim} is not divisible by {num_heads} heads')
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, allowed, past_k=None, past_v=None):
        """Attend from x (B, T, D) to past keys (B, H, S, hd) and to x itself.

        `allowed` (B, T, S + T) bool says which keys each query may see. Returns the output
        (B, T, D) and the new tokens' keys and values (B, H, T, hd).
        """
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.num_heads, d // self.num_heads).permute(
            2, 0, 3, 1, 4)
        keys = k if past_k is None else torch.cat((past_k, k), dim=2)
        values = v if past_v is None else torch.cat((past_v, v), dim=2)
        y = F.scaled_dot_product_attention(q, keys, values, attn_mask=allowed[:, None])
        return self.proj(y.transpose(1, 2).reshape(b, t, d)), k, v


class Block(nn.Module):
    """Pre-norm transformer block: causal attention, then a SwiGLU MLP."""

    def __init__(self, dim, num_heads, mlp_ratio):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = CausalAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = SwiGLU(dim, swiglu_hidden(dim, mlp_ratio), bias=False)

    def forward(self, x, allowed, past_k=None, past_v=None):
        y, k, v = self.attn(self.norm1(x), allowed, past_k, past_v)
        x = x + y
        return x + self.mlp(self.norm2(x)), k, v


class TemporalBackbone(nn.Module):
    """Causal transformer over window tokens; `head` predicts the next token (stage 2)."""

    def __init__(self, cfg, token_dim, tokens_per_window):
        super().__init__()
        self.cfg = cfg
        self.tokens_per_window = tokens_per_window
        dim = cfg.dim
        self.in_proj = nn.Linear(token_dim, dim) if token_dim != dim else nn.Identity()
        self.modality_embed = nn.Embedding(2, dim)
        self.time_embed = nn.Embedding(cfg.max_windows, dim)
        self.slot_embed = nn.Embedding(tokens_per_window, dim)
        self.blocks = nn.ModuleList(Block(dim, cfg.num_heads, cfg.mlp_ratio)
                                    for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, token_dim)
        for emb in (self.modality_embed, self.time_embed, self.slot_embed):
            nn.init.trunc_normal_(emb.weight, std=0.02)

    def embed(self, tokens, modality, window, slot):
        """Add modality, temporal and slot embeddings; all index tensors are (B, T) long."""
        return (self.in_proj(tokens) + self.modality_embed(modality) + self.time_embed(window)
                + self.slot_embed(slot))

    def forward(self, tokens, modality, window, slot, valid, cache=None):
        """Run new tokens (B, T, Din) after an optional cache.

        cache: None, or (keys, values, cache_valid) with keys / values lists over layers of
        (B, H, S, hd) and cache_valid (B, S) bool. Returns (hidden (B, T, D) after the final
        norm, [per-layer new keys], [per-layer new values]).
        """
        x = self.embed(tokens, modality, window, slot)
        t = x.shape[1]
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        own = torch.eye(t, dtype=torch.bool, device=x.device)
        # A token never sees an invalid one (a missing frame), but always sees itself so
        # that no attention row is empty.
        allowed = (causal[None] & valid[:, None, :]) | own[None]
        if cache is not None:
            past_keys, past_values, cache_valid = cache
            seen = cache_valid[:, None, :].expand(-1, t, -1)
            allowed = torch.cat((seen, allowed), dim=2)
        else:
            past_keys = past_values = [None] * len(self.blocks)
        new_keys, new_values = [], []
        for block, pk, pv in zip(self.blocks, past_keys, past_values):
            x, k, v = block(x, allowed, pk, pv)
            new_keys.append(k)
            new_values.append(v)
        return self.norm(x), new_keys, new_values

    def predict_next(self, hidden):
        """Map hidden states (B, T, D) to predicted next tokens (B, T, Din)."""
        return self.head(hidden)
