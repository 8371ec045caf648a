"""Stage data: the cached windows of the training config, on the right device."""

from training.data.cache import build_cache
from training.data.dataset import WindowDataset
from training.data.sources import open_source

from .common import ConfigError


def sources(config):
    """Return the readers of `data.sources`; ConfigError naming the first bad entry.

    An entry is a bag or data set path, recognised by its layout, or a mapping
    {format: bag|dsec|mvsec|ddd17|nimagenet, path: ..., <reader options>}
    (training.data.sources).
    """
    entries = (config.get('data') or {}).get('sources')
    if not entries:
        raise ConfigError('data.sources: list the bags (or data set folders) to train on')
    if not isinstance(entries, (list, tuple)):
        raise ConfigError(f'data.sources: expected a list of entries, got {entries!r}')
    readers = []
    for i, entry in enumerate(entries):
        try:
            readers.append(open_source(entry))
        except (ValueError, TypeError) as exc:
            raise ConfigError(f'data.sources[{i}]: {exc}') from None
    return readers


def datasets(config, sequence_length):
    """Build (or reuse) the window cache of `config['data']`; return (train, val) datasets."""
    data = config.get('data') or {}
    readers = sources(config)
    from .common import model_config
    cfg = model_config(config)
    representation = data.get('representation') or {'name': 'polarity_rgb', 'percentile': 90.0}
    try:
        cache = build_cache(readers, data.get('cache', 'out/cache'), representation,
                            tuple(cfg.input_size), data.get('window') or {'duration_ms': 50.0},
                            val_fraction=float(data.get('val_fraction', 0.2)))
    except ValueError as exc:  # a bad window or representation, a file not in its format
        raise ConfigError(f'data: {exc}') from None
    return (WindowDataset(cache, 'train', sequence_length),
            WindowDataset(cache, 'val', sequence_length))


def to_device(batch, device):
    return {k: v.to(device) if hasattr(v, 'to') else v for k, v in batch.items()}
