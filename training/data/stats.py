"""Per-channel input statistics of a data set, for the encoders' normalisation.

GEP normalises event images and frames with each data set's own mean and standard deviation
(src/config.py:71-104, computed by utils.compute_mean_std over the training set) instead of
ImageNet's. `input_stats` computes them over the training split of a window cache, exactly
as the stages see the inputs (the cached representation at the model's input size, frames
in [0, 1]); `gep train stats` writes them into a config as `model.encoder.mean`, `std`,
`frame_mean` and `frame_std`.
"""

import torch


def input_stats(dataset, batch=64):
    """Return {'mean', 'std', 'frame_mean', 'frame_std'}: per-channel lists over `dataset`.

    dataset: a WindowDataset (sequence length 1 is enough). Sums run in float64 over every
    pixel of every item; std is the population standard deviation.
    """
    if not len(dataset):
        raise ValueError(f'{dataset.cache_dir}: no {dataset.split} windows to compute '
                         'statistics from')
    sums = {}
    for start in range(0, len(dataset), batch):
        items = dataset.batch(range(start, min(start + batch, len(dataset))))
        for name, key in (('events', 'mean'), ('images', 'frame_mean')):
            x = items[name].flatten(0, 1).double()  # (B*T, C, H, W)
            s, s2, n = sums.get(key, (0.0, 0.0, 0))
            sums[key] = (s + x.sum(dim=(0, 2, 3)), s2 + (x * x).sum(dim=(0, 2, 3)),
                         n + x.numel() // x.shape[1])
    out = {}
    for key, (s, s2, n) in sums.items():
        mean = s / n
        std = torch.sqrt(torch.clamp(s2 / n - mean * mean, min=0.0))
        out[key] = [float(v) for v in mean]
        out[key.replace('mean', 'std')] = [float(v) for v in std]
    return out
