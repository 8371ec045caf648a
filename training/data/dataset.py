"""Training items from a window cache: single windows, or runs of consecutive windows.

`WindowDataset(cache_dir, split, sequence_length=T)` serves what the stages train on. An
item is a run of T consecutive windows of one sequence, all in the requested split (so a
run never crosses sequences or the train / validation boundary; T = 1 gives every window
of the split). Shards are opened lazily with safetensors' `safe_open` (memory-mapped) and
kept open per process, and an item reads only its own rows, so the cache is never loaded
whole. Items:

    events      (T, C, H, W) float32  the cached representation
    images      (T, 3, H, W) float32  RGB in [0, 1]
    depth       (T, H, W)    float32  metres, NaN where invalid
    labels      (T, H, W)    int64    class ids, 255 = ignore
    has_depth, has_labels, has_image (T,) bool  (every cached window has its frame)
    stamps, sequence, position (T,) int64
    category    (T,)         int64    class index, -1 where none; only from caches of
                                      sources with categories (N-ImageNet)

`batch(indices)` stacks items into (B, T, ...) tensors: what the training engine asks a
stage for. Stages that precompute per-window features address the cache rows directly:
`num_windows` rows (all splits), `windows(rows)` reads them, `window_indices(item)` names
an item's rows, and `key` names the cache.
"""

import os
from pathlib import Path

import numpy as np
from safetensors import safe_open
import torch

from .cache import load_index


class WindowDataset:
    """Items of one split of a window cache; see the module docstring."""

    def __init__(self, cache_dir, split='train', sequence_length=1):
        if split not in ('train', 'val'):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        if sequence_length < 1:
            raise ValueError(f'sequence_length must be at least 1, got {sequence_length}')
        self.cache_dir = Path(cache_dir)
        self.index = load_index(self.cache_dir)
        self.split = split
        self.sequence_length = sequence_length
        self.shard_size = self.index['shard_size']
        self.shards = self.index['shards']
        samples = self.index['samples']
        self.sequence = np.asarray(samples['sequence'], np.int64)
        self.position = np.asarray(samples['position'], np.int64)
        self.has_gt = (np.asarray(samples['has_depth'], bool)
                       | np.asarray(samples['has_labels'], bool))  # (N,) any GT per row
        if 'category' in samples:  # classification: a category is GT too
            self.has_gt |= np.asarray(samples['category'], np.int64) >= 0
        self.starts = _run_starts(self.sequence, self.position,
                                  np.asarray(samples['split']) == split, sequence_length)
        self._open = {}  # shard number -> safe_open handle, valid in process self._pid
        self._pid = None

    def __len__(self):
        return len(self.starts)

    @property
    def num_samples(self):
        return len(self)

    @property
    def key(self):
        return self.index['key']

    @property
    def num_windows(self):
        """Cache rows of every split (windows across the split boundary included)."""
        return self.index['count']

    def window_indices(self, item):
        """Return the T cache rows of an item, oldest first."""
        first = int(self.starts[item])
        return list(range(first, first + self.sequence_length))

    def has_image(self, rows):
        """Return a bool tensor shaped like `rows`: whether each window has its frame."""
        return torch.ones(torch.as_tensor(rows).shape, dtype=torch.bool)

    def labelled_items(self):
        """Return the items with GT (depth, labels or category) in at least one window."""
        gt = np.cumsum(np.concatenate([[0], self.has_gt]))
        ends = self.starts + self.sequence_length
        return np.flatnonzero(gt[ends] - gt[self.starts] > 0).tolist()

    def _shard(self, number):
        if self._pid != os.getpid():  # a forked DataLoader worker opens its own handles
            self._open, self._pid = {}, os.getpid()
        if number not in self._open:
            path = self.cache_dir / self.shards[number]
            self._open[number] = safe_open(str(path), framework='pt')
        return self._open[number]

    def _rows(self, first, count):
        """Return {name: (count, ...) tensor} of cache rows first .. first + count - 1."""
        parts = []
        row = first
        while row < first + count:
            number, offset = divmod(row, self.shard_size)
            take = min(self.shard_size - offset, first + count - row)
            shard = self._shard(number)
            parts.append({name: shard.get_slice(name)[offset:offset + take]
                          for name in shard.keys()})
            row += take
        if len(parts) == 1:
            return parts[0]
        return {name: torch.cat([p[name] for p in parts]) for name in parts[0]}

    def windows(self, rows):
        """Return cache rows (any split) as the tensors of an item, with B for T."""
        rows = [int(r) for r in rows]
        if rows == list(range(rows[0], rows[0] + len(rows))):
            return _as_item(self._rows(rows[0], len(rows)))
        parts = [self._rows(r, 1) for r in rows]
        return _as_item({name: torch.cat([p[name] for p in parts]) for name in parts[0]})

    def __getitem__(self, item):
        if not -len(self) <= item < len(self):
            raise IndexError(f'item {item} of {len(self)} in {self.cache_dir} ({self.split})')
        return _as_item(self._rows(int(self.starts[item]), self.sequence_length))

    def batch(self, indices):
        """Stack the items at `indices` into a dict of (B, T, ...) tensors."""
        items = [self[int(i)] for i in indices]
        return {name: torch.stack([item[name] for item in items]) for name in items[0]}

    def __getstate__(self):
        # Open shard handles cannot be pickled (spawned workers); each process reopens.
        state = dict(self.__dict__)
        state['_open'], state['_pid'] = {}, None
        return state


def _as_item(rows):
    """Turn stored rows into model-ready tensors (see the module docstring)."""
    return {
        'events': rows['events'].float(),
        'images': rows['frames'].float() / 255,
        'depth': rows['depth'].float(),
        'labels': rows['labels'].long(),
        'has_depth': rows['has_depth'].bool(),
        'has_labels': rows['has_labels'].bool(),
        'has_image': torch.ones(rows['stamps'].shape, dtype=torch.bool),
        'stamps': rows['stamps'].long(),
        'sequence': rows['sequence'].long(),
        'position': rows['position'].long(),
        **({'category': rows['category'].long()} if 'category' in rows else {}),
    }


def _run_starts(sequence, position, in_split, length):
    """Cache rows where a run of `length` consecutive same-sequence in-split rows starts."""
    n = len(sequence)
    if n < length:
        return np.zeros(0, np.int64)
    # Row i continues row i - 1: same sequence, next position, both in the split.
    follows = np.zeros(n, bool)
    follows[1:] = ((sequence[1:] == sequence[:-1]) & (position[1:] == position[:-1] + 1)
                   & in_split[1:] & in_split[:-1])
    rows = np.arange(n)
    run_start = np.maximum.accumulate(np.where(in_split & ~follows, rows, 0))
    run = np.where(in_split, rows - run_start + 1, 0)  # length of the run ending at row i
    ends = np.flatnonzero(run >= length)
    return ends - (length - 1)
