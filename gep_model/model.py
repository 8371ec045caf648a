"""GEPModel: event window (and frame) in, depth, segmentation and class logits out.

Two ways to run the same weights:
- `forward(events, images, has_image)` over whole sequences of T windows, for training
  (stage 2 and fine-tuning) and as the reference;
- `step(event, image, has_image, state)` one window at a time with a fixed-size key/value
  cache, for the robot. For as many windows as the context holds (`max_windows`) the two
  agree exactly; when a stream's context is full, `step` re-bases it on its most recent
  `max_windows // 2` windows (recomputing their keys from the stored tokens, with temporal
  positions restarting at 0), which equals a full forward over those windows and the new one.
"""

from dataclasses import replace

import torch
from torch import nn

from .nn.encoder import grid_pooling_matrix, ViTEncoder
from .nn.heads import ClassificationHead, DepthHead, UPerNetHead
from .nn.temporal import EVENT, IMAGE, TemporalBackbone


class GEPModel(nn.Module):
    """The GEP network; see the module docstring for the two ways to run it."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        enc, tcfg, hcfg = config.encoder, config.temporal, config.heads
        self.encoder = ViTEncoder(enc, config.input_size)
        # Frames are encoded by a ViT of the same (teacher) architecture, on RGB.
        self.image_encoder = (ViTEncoder(replace(enc, in_chans=3, mean=enc.frame_mean,
                                                 std=enc.frame_std), config.input_size)
                              if tcfg.image_tokens else None)
        pool = grid_pooling_matrix(config.grid, tcfg.pool_grid)  # (K, N)
        self.register_buffer('pool', pool, persistent=False)
        # Which pool cell each patch belongs to, to spread cell context back onto patches.
        self.register_buffer('spread', (pool[:-1] > 0).float().T.contiguous(), persistent=False)
        self.tokens_per_window = pool.shape[0]
        self.temporal = TemporalBackbone(tcfg, enc.embed_dim, self.tokens_per_window)
        self.context_proj = nn.ModuleList(nn.Conv2d(tcfg.dim, enc.embed_dim, 1)
                                          for _ in enc.feature_blocks)
        for conv in self.context_proj:  # start as the plain encoder, learn the context in
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
        self.depth_head = (DepthHead(enc.embed_dim, hcfg.width, hcfg.min_depth, hcfg.max_depth)
                           if hcfg.depth else None)
        self.seg_head = (UPerNetHead(enc.embed_dim, hcfg.width, hcfg.num_classes,
                                     enc.patch_size, len(enc.feature_blocks))
                         if hcfg.num_classes else None)
        self.cls_head = (ClassificationHead(enc.embed_dim, tcfg.dim, hcfg.num_categories)
                         if hcfg.num_categories else None)

    @property
    def tokens_per_step(self):
        """Sequence tokens each window adds: its event tokens, then its image tokens."""
        k = self.tokens_per_window
        return 2 * k if self.image_encoder is not None else k

    # -- pieces -------------------------------------------------------------------------
    def window_tokens(self, encoder, x):
        """Encode (B, C, H, W) -> (pooled tokens (B, K, D), all tokens, feature levels)."""
        tokens, features = encoder(x)
        patches = tokens[:, encoder.num_prefix_tokens:]  # (B, N, D)
        return torch.matmul(self.pool, patches), tokens, features

    def step_layout(self, batch, window, has_image, device):
        """Modality, window, slot (B, S) long and validity (B, S) bool of one window's tokens.

        window: (B,) long temporal position; has_image: (B,) bool or None.
        """
        k = self.tokens_per_window
        modality = [torch.full((k,), EVENT, dtype=torch.long, device=device)]
        valid = [torch.ones(batch, k, dtype=torch.bool, device=device)]
        if self.image_encoder is not None:
            modality.append(torch.full((k,), IMAGE, dtype=torch.long, device=device))
            valid.append(has_image[:, None].expand(-1, k).to(torch.bool))
        modality = torch.cat(modality)[None].expand(batch, -1)
        slot = torch.arange(k, device=device).repeat(len(valid))[None].expand(batch, -1)
        return modality, window[:, None].expand(-1, modality.shape[1]), slot, torch.cat(valid, 1)

    def decode(self, tokens, features, context, keep_features=False):
        """Heads on one window: encoder tokens/features and its event-token context (B, K, Dt).

        keep_features: also return the context-fused feature levels the heads read, as
        'features' (a list of (B, D, h, w)), for training-only heads (the auxiliary FCN).
        """
        b = context.shape[0]
        h, w = self.config.grid
        cells, mean = context[:, :-1], context[:, -1:]
        ctx = (torch.matmul(self.spread, cells) + mean).transpose(1, 2).reshape(b, -1, h, w)
        features = [f + proj(ctx) for f, proj in zip(features, self.context_proj)]
        out = {'features': features} if keep_features else {}
        size = tuple(self.config.input_size)
        if self.depth_head is not None:
            out['log_depth'], out['depth'] = self.depth_head(features, size)
        if self.seg_head is not None:
            out['seg_logits'] = self.seg_head(features, size)
        if self.cls_head is not None:
            out['class_logits'] = self.cls_head(tokens[:, 0], mean[:, 0])
        return out

    # -- whole sequences ----------------------------------------------------------------
    def sequence(self, event_tokens, image_tokens=None, has_image=None):
        """Interleave per-window tokens into the temporal backbone's sequence.

        event_tokens, image_tokens: (B, T, K, D) pooled window tokens (image_tokens None
        without image tokens); has_image: (B, T) bool. Returns (seq (B, T*S, D), modality,
        window, slot (B, T*S) long, valid (B, T*S) bool), window by window: its event
        tokens, then its image tokens.
        """
        b, t = event_tokens.shape[:2]
        device = event_tokens.device
        parts = [event_tokens]
        if self.image_encoder is not None:
            parts.append(image_tokens)
        seq = torch.cat(parts, dim=2).flatten(1, 2)
        layouts = [self.step_layout(b, torch.full((b,), i, device=device),
                                    None if has_image is None else has_image[:, i], device)
                   for i in range(t)]
        modality, window, slot, valid = (torch.cat(p, dim=1) for p in zip(*layouts))
        return seq, modality, window, slot, valid

    def forward(self, events, images=None, has_image=None, keep_features=False):
        """Run T windows per sequence.

        events: (B, T, C, H, W) representations; images: (B, T, 3, H, W) or None;
        has_image: (B, T) bool or None (all frames present when images are given).
        Returns the heads' outputs with a time axis ((B, T, ...)), plus 'tokens' (B, T*S, D)
        (the sequence fed to the temporal backbone), 'hidden' (B, T*S, Dt), 'modality' and
        'valid' (B, T*S): what stage 2's next-token loss needs. keep_features adds
        'features': the fused levels the heads read, each (B*T, D, h, w).
        """
        b, t = events.shape[:2]
        k, s = self.tokens_per_window, self.tokens_per_step
        pooled, tokens, features = self.window_tokens(self.encoder, events.flatten(0, 1))
        image_tokens = None
        if self.image_encoder is not None:
            if images is None:
                images = events.new_zeros(b, t, 3, *events.shape[-2:])
                has_image = torch.zeros(b, t, dtype=torch.bool, device=events.device)
            elif has_image is None:
                has_image = torch.ones(b, t, dtype=torch.bool, device=events.device)
            image_tokens = self.window_tokens(self.image_encoder, images.flatten(0, 1))[0]
            image_tokens = image_tokens.view(b, t, k, -1)
        seq, modality, window, slot, valid = self.sequence(pooled.view(b, t, k, -1),
                                                           image_tokens, has_image)
        hidden, _, _ = self.temporal(seq, modality, window, slot, valid)
        context = hidden.view(b, t, s, -1)[:, :, :k].flatten(0, 1)  # event tokens' outputs
        out = self.decode(tokens, features, context, keep_features)
        kept = out.pop('features', None)
        out = {name: value.view(b, t, *value.shape[1:]) for name, value in out.items()}
        if kept is not None:
            out['features'] = kept
        out.update(tokens=seq, hidden=hidden, modality=modality, valid=valid)
        return out

    # -- streaming ----------------------------------------------------------------------
    def init_state(self, batch, device=None, dtype=None):
        """Empty streaming state for `batch` streams (a dict of tensors)."""
        tcfg = self.config.temporal
        size = tcfg.max_windows * self.tokens_per_step
        hd = tcfg.dim // tcfg.num_heads
        cache = (tcfg.depth, batch, tcfg.num_heads, size, hd)
        return {
            'keys': torch.zeros(cache, device=device, dtype=dtype),
            'values': torch.zeros(cache, device=device, dtype=dtype),
            'valid': torch.zeros(batch, size, dtype=torch.bool, device=device),
            'tokens': torch.zeros(batch, size, self.config.encoder.embed_dim, device=device,
                                  dtype=dtype),
            'window': torch.zeros(batch, dtype=torch.long, device=device),
        }

    def step_exportable(self, event, image, has_image, keys, values, valid, tokens, window):
        """One window per stream with static shapes (the graph torch.export captures).

        event (B, C, H, W), image (B, 3, H, W) (ignored without image tokens), has_image (B,)
        bool, cache tensors as in `init_state`, window (B,) long < max_windows. Returns the
        outputs dict and the new state tensors.
        """
        b = event.shape[0]
        k = self.tokens_per_window
        pooled, enc_tokens, features = self.window_tokens(self.encoder, event)
        new = [pooled]
        if self.image_encoder is not None:
            new.append(self.window_tokens(self.image_encoder, image)[0])
        new = torch.cat(new, dim=1)  # (B, S, D)
        s = new.shape[1]
        modality, win, slot, new_valid = self.step_layout(b, window, has_image, event.device)
        hidden, new_keys, new_values = self.temporal(
            new, modality, win, slot, new_valid, cache=(keys.unbind(0), values.unbind(0), valid))
        # Shift the fixed-size cache left by this window's tokens and append them.
        keys = torch.cat((keys, torch.stack(new_keys)), dim=3)[:, :, :, s:]
        values = torch.cat((values, torch.stack(new_values)), dim=3)[:, :, :, s:]
        valid = torch.cat((valid, new_valid), dim=1)[:, s:]
        tokens = torch.cat((tokens, new), dim=1)[:, s:]
        out = self.decode(enc_tokens, features, hidden[:, :k])
        return out, (keys, values, valid, tokens, window + 1)

    def step(self, event, image=None, has_image=None, state=None):
        """Feed one window per stream; returns (outputs, new state). See the module doc."""
        b = event.shape[0]
        if state is None:
            state = self.init_state(b, event.device, event.dtype)
        if has_image is None:
            has_image = torch.full((b,), image is not None, dtype=torch.bool, device=event.device)
        if image is None:
            image = event.new_zeros(b, 3, *event.shape[-2:])
        full = state['window'] >= self.config.temporal.max_windows
        if bool(full.any()):
            state = self.rebase(state, full)
        out, (keys, values, valid, tokens, window) = self.step_exportable(
            event, image, has_image, state['keys'], state['values'], state['valid'],
            state['tokens'], state['window'])
        return out, {'keys': keys, 'values': values, 'valid': valid, 'tokens': tokens,
                     'window': window}

    def rebase(self, state, rows):
        """Restart the context of the streams in `rows` (B,) bool on their latest windows."""
        tcfg = self.config.temporal
        keep = max(tcfg.max_windows // 2, 1)
        s = self.tokens_per_step
        idx = rows.nonzero()[:, 0]
        n = len(idx)
        tokens = state['tokens'][idx, -keep * s:]
        valid = state['valid'][idx, -keep * s:]
        # A window's frame flag is the validity of its first image token (none without frames).
        frames = self.image_encoder is not None
        layouts = [self.step_layout(n, torch.full((n,), i, device=tokens.device),
                                    valid[:, i * s + self.tokens_per_window] if frames else None,
                                    tokens.device)
                   for i in range(keep)]
        modality, window, slot, _ = (torch.cat(parts, dim=1) for parts in zip(*layouts))
        _, new_keys, new_values = self.temporal(tokens, modality, window, slot, valid)
        state = {name: value.clone() for name, value in state.items()}
        keys, values = state['keys'], state['values']
        keys[:, idx] = 0
        values[:, idx] = 0
        keys[:, idx, :, -keep * s:] = torch.stack(new_keys)
        values[:, idx, :, -keep * s:] = torch.stack(new_values)
        state['valid'][idx] = False
        state['valid'][idx, -keep * s:] = valid
        state['window'][idx] = keep
        return state

    def num_parameters(self, trainable_only=False):
        return sum(p.numel() for p in self.parameters()
                   if p.requires_grad or not trainable_only)


def build_model(config):
    """Build a randomly initialised GEPModel from a GEPConfig."""
    return GEPModel(config)
