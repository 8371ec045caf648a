"""Stage data: the cached windows of the training config, on the right device."""

from training.data.cache import build_cache
from training.data.dataset import WindowDataset

from .common import ConfigError


def datasets(config, sequence_length):
    """Build (or reuse) the window cache of `config['data']`; return (train, val) datasets."""
    data = config.get('data') or {}
    if not data.get('sources'):
        raise ConfigError('data.sources: list the bags (or data set folders) to train on')
    from .common import model_config
    cfg = model_config(config)
    cache = build_cache(data['sources'], data.get('cache', 'out/cache'),
                        data.get('representation') or {'name': 'polarity_rgb', 'percentile': 90.0},
                        tuple(cfg.input_size), data.get('window') or {'duration_ms': 50.0},
                        val_fraction=float(data.get('val_fraction', 0.2)))
    return (WindowDataset(cache, 'train', sequence_length),
            WindowDataset(cache, 'val', sequence_length))


def to_device(batch, device):
    return {k: v.to(device) if hasattr(v, 'to') else v for k, v in batch.items()}
