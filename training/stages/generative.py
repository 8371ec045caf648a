"""GEP stage 2: generative pretraining of the temporal backbone on event-image sequences.

The stage-1 encoders are frozen; their window tokens are computed once for the whole data
set and cached beside the run (`tokens_<key>.pt`, keyed by the encoder weights and the
scheme), so epochs never run the ViTs. Sequences of T consecutive windows interleave each
window's event tokens and, where a frame exists, its image tokens; the causal transformer
regresses the next continuous token with MSE (no quantisation, no pixels).

Two token schemes (`tokens.scheme`):
- `patches` (GEP's, the default): every patch token of a window; the sequence of window
  chunks (events, then the frame, per window) is reduced in groups of 8 chunks to the
  chunks' temporal means per patch plus one spatial mean per chunk
  (gep_model.nn.temporal.spatiotemporal_aggregate, GEP gpt.py:112-124). Needs
  `model.temporal.pool_grid: null`, so that the model's slots are the patches plus a mean.
- `pooled` (ours, for small models and CPUs): the model's pooled cells plus the window mean
  (`GEPModel.window_tokens`), the very tokens the robot's streaming step feeds.
Optimiser (GEP gpt.py:72, 298-308, utils.get_param_groups): lr 1e-4, no weight decay on
the transformer (the prediction head keeps loop.weight_decay, 1e-5 as GEP's), gradient norm
clipped at 1.0 and then each element at 0.5 (`loop.grad_clip`, `loop.grad_clip_value`).
"""

import hashlib
import os
from pathlib import Path

import torch
from torch import nn

from gep_model.losses import next_token_loss
from gep_model.nn.temporal import AGGREGATE_GROUP, interleave_windows, spatiotemporal_aggregate

from .common import build_model, ConfigError, freeze, param_groups
from .data import datasets, to_device

SCHEMES = ('patches', 'pooled')
# Weight decay off for the transformer (GEP's get_param_groups puts it in a group without).
NO_DECAY = ('gep.temporal.in_proj.', 'gep.temporal.blocks.', 'gep.temporal.norm.')


class GenerativeObjective(nn.Module):
    """The trained module: the GEP model, of which only the temporal backbone learns."""

    def __init__(self, gep, weights=None, scheme='patches', group=AGGREGATE_GROUP):
        super().__init__()
        self.gep = gep
        self.weights = weights  # {modality id: weight}, None: every token counts
        self.scheme = scheme
        self.group = group

    def sequence(self, event_tokens, image_tokens, has_image):
        """Return (seq, modality, window, slot, valid) (B, L, ...) of the token scheme."""
        if self.scheme == 'pooled':
            return self.gep.sequence(event_tokens, image_tokens, has_image)
        chunks = interleave_windows(event_tokens, image_tokens, has_image)
        return spatiotemporal_aggregate(*chunks, group=self.group)

    def forward(self, event_tokens, image_tokens, has_image):
        """Return the next-token loss for (B, T, K, D) window tokens and (B, T) frames."""
        gep = self.gep
        seq, modality, window, slot, valid = self.sequence(event_tokens, image_tokens, has_image)
        hidden, _, _ = gep.temporal(seq, modality, window, slot, valid)
        pred = gep.temporal.predict_next(hidden[:, :-1])
        loss = next_token_loss(pred, seq[:, 1:], modality[:, 1:], self.weights, valid[:, 1:])
        return loss, {'next_token': loss}


class TokenCache:
    """Window tokens of every cached window, computed once with the frozen encoders.

    scheme 'pooled': the model's pooled tokens (N, K, D); 'patches': all patch tokens
    (N, h*w, D), stored in float16 and memory-mapped (gep_small at 252 x 350: 340 kB a
    window and modality).
    """

    def __init__(self, gep, dataset, folder, device, batch=16, scheme='pooled'):
        digest = hashlib.sha256(scheme.encode())
        for name, value in sorted(gep.state_dict().items()):
            if name.startswith(('encoder.', 'image_encoder.')):
                digest.update(name.encode())
                digest.update(value.detach().cpu().contiguous().numpy().tobytes())
        key = f'{digest.hexdigest()[:16]}_{dataset.key}'
        path = Path(folder) / f'tokens_{key}.pt'
        if not path.exists():
            data = self._compute(gep, dataset, device, batch, scheme)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f'.{os.getpid()}.tmp')  # ranks may write at once
            torch.save(data, tmp)
            tmp.replace(path)
        data = torch.load(path, weights_only=True, mmap=True)
        self.events, self.images = data['events'], data['images']  # (N, K, D)

    @staticmethod
    def _compute(gep, dataset, device, batch, scheme):
        def tokens(encoder, x):
            if scheme == 'pooled':
                return gep.window_tokens(encoder, x)[0].cpu()
            return encoder(x)[0][:, encoder.num_prefix_tokens:].to('cpu', torch.float16)

        events, images = [], []
        with torch.no_grad():
            for start in range(0, dataset.num_windows, batch):
                win = to_device(dataset.windows(range(start, min(start + batch,
                                                                 dataset.num_windows))), device)
                events.append(tokens(gep.encoder, win['events']))
                if gep.image_encoder is not None:
                    images.append(tokens(gep.image_encoder, win['images']))
        return {'events': torch.cat(events), 'images': torch.cat(images) if images else
                torch.empty(0)}


class GenerativeStage:
    name = 'generative'

    def __init__(self, config, device):
        self.config = config
        self.device = device
        gep = build_model(config)
        freeze(gep)
        freeze(gep.temporal, False)
        weights = (config.get('losses') or {}).get('modality_weights')
        if weights:
            weights = {int(k): float(v) for k, v in weights.items()}
        scheme, group = token_scheme(config, gep)
        self.model = GenerativeObjective(gep, weights, scheme, group)
        length = int((config.get('data') or {}).get('sequence_length', 8))
        if length > gep.config.temporal.max_windows:
            raise ConfigError(f'data.sequence_length: {length} windows exceed the model '
                              f'temporal.max_windows {gep.config.temporal.max_windows}')
        self.train_set, self.val_set = datasets(config, sequence_length=length)
        gep.to(device)
        cache_dir = (config.get('data') or {}).get('cache', 'out/cache')
        self.tokens = TokenCache(gep, self.train_set, cache_dir, device, scheme=scheme)
        self.num_samples = len(self.train_set)

    def param_groups(self, model):
        return param_groups(model, self.config.get('loop', {}).get('weight_decay', 1e-5),
                            no_decay=NO_DECAY)

    def _gather(self, dataset, indices):
        windows = torch.as_tensor([dataset.window_indices(i) for i in indices])  # (B, T)
        has_image = dataset.has_image(windows)
        images = self.tokens.images[windows].float() if len(self.tokens.images) else None
        return (self.tokens.events[windows].float().to(self.device),
                None if images is None else images.to(self.device), has_image.to(self.device))

    def batch(self, indices):
        return self._gather(self.train_set, indices)

    def loss(self, model, batch):
        loss, terms = model(*batch)
        return loss, {k: float(v.detach()) for k, v in terms.items()}

    def evaluate(self, model):
        total, n = 0.0, 0
        for start in range(0, len(self.val_set), 8):
            idx = list(range(start, min(start + 8, len(self.val_set))))
            loss, _ = model(*self._gather(self.val_set, idx))
            total += float(loss) * len(idx)
            n += len(idx)
        return {'next_token': total / n} if n else {}


def token_scheme(config, gep):
    """Return (scheme, group) of `tokens:` in a stage-2 config; ConfigError if unusable."""
    tokens = config.get('tokens') or {}
    unknown = sorted(set(tokens) - {'scheme', 'group'})
    if unknown:
        raise ConfigError(f'tokens.{unknown[0]}: no such setting (scheme, group)')
    scheme = tokens.get('scheme', 'patches')
    if scheme not in SCHEMES:
        raise ConfigError(f'tokens.scheme: {scheme!r} is not one of {", ".join(SCHEMES)}')
    group = tokens.get('group', AGGREGATE_GROUP)
    if not isinstance(group, int) or group < 1:
        raise ConfigError(f'tokens.group: {group!r} is not a positive whole number of windows')
    if scheme == 'patches' and gep.config.temporal.pool_grid is not None:
        raise ConfigError(f'tokens.scheme patches: needs model.temporal.pool_grid: null (all '
                          f'patches as slots), the model has {gep.config.temporal.pool_grid}; '
                          'or use tokens.scheme: pooled')
    return scheme, group
