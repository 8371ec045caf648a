"""GEP stage 2: generative pretraining of the temporal backbone on event-image sequences.

The stage-1 encoders are frozen; their pooled window tokens are computed once for the whole
data set and cached beside the run (`tokens.pt`, keyed by the encoder weights), so epochs
never run the ViTs. Sequences of T consecutive windows interleave each window's event tokens
and, where a frame exists, its image tokens; the causal transformer regresses the next
continuous token with MSE (no quantisation, no pixels).
"""

import hashlib
from pathlib import Path

import torch
from torch import nn

from gep_model.losses import next_token_loss

from .common import build_model, freeze, param_groups
from .data import datasets, to_device


class GenerativeObjective(nn.Module):
    """The trained module: the GEP model, of which only the temporal backbone learns."""

    def __init__(self, gep, weights=None):
        super().__init__()
        self.gep = gep
        self.weights = weights  # {modality id: weight}, None: every token counts

    def forward(self, event_tokens, image_tokens, has_image):
        """Return the next-token loss for (B, T, K, D) window tokens and (B, T) frames."""
        gep = self.gep
        seq, modality, window, slot, valid = gep.sequence(event_tokens, image_tokens, has_image)
        hidden, _, _ = gep.temporal(seq, modality, window, slot, valid)
        pred = gep.temporal.predict_next(hidden[:, :-1])
        loss = next_token_loss(pred, seq[:, 1:], modality[:, 1:], self.weights, valid[:, 1:])
        return loss, {'next_token': loss}


class TokenCache:
    """Pooled window tokens of every cached window, computed once with the frozen encoders."""

    def __init__(self, gep, dataset, folder, device, batch=16):
        digest = hashlib.sha256()
        for name, value in sorted(gep.state_dict().items()):
            if name.startswith(('encoder.', 'image_encoder.')):
                digest.update(name.encode())
                digest.update(value.detach().cpu().contiguous().numpy().tobytes())
        key = f'{digest.hexdigest()[:16]}_{dataset.key}'
        path = Path(folder) / f'tokens_{key}.pt'
        if path.exists():
            data = torch.load(path, weights_only=True)
        else:
            data = self._compute(gep, dataset, device, batch)
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(data, path)
        self.events, self.images = data['events'], data['images']  # (N, K, D)

    @staticmethod
    def _compute(gep, dataset, device, batch):
        events, images = [], []
        with torch.no_grad():
            for start in range(0, dataset.num_windows, batch):
                win = to_device(dataset.windows(range(start, min(start + batch,
                                                                 dataset.num_windows))), device)
                events.append(gep.window_tokens(gep.encoder, win['events'])[0].cpu())
                if gep.image_encoder is not None:
                    images.append(gep.window_tokens(gep.image_encoder, win['images'])[0].cpu())
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
        self.model = GenerativeObjective(gep, weights)
        length = int((config.get('data') or {}).get('sequence_length', 8))
        self.train_set, self.val_set = datasets(config, sequence_length=length)
        gep.to(device)
        cache_dir = (config.get('data') or {}).get('cache', 'out/cache')
        self.tokens = TokenCache(gep, self.train_set, cache_dir, device)
        self.num_samples = len(self.train_set)

    def param_groups(self, model):
        return param_groups(model, self.config.get('loop', {}).get('weight_decay', 0.05))

    def _gather(self, dataset, indices):
        windows = torch.as_tensor([dataset.window_indices(i) for i in indices])  # (B, T)
        has_image = dataset.has_image(windows)
        images = self.tokens.images[windows] if len(self.tokens.images) else None
        return (self.tokens.events[windows].to(self.device),
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
