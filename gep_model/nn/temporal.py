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
