"""The preprocessed window cache: decode and render every source once, train from shards.

`build_cache(sources, out_dir, ...)` turns each source's samples (bag_windows' sample
dicts) into model-sized tensors and writes them, in source then time order, to safetensors
shards of `shard_size` samples each:

    events      (N, C, H, W) float16  the representation, fit_to_input 'resize' to input_size
    frames      (N, 3, H, W) uint8    RGB, resized the same way (antialiased bilinear)
    depth       (N, H, W)    float32  metres, NaN where invalid or absent (nearest)
    labels      (N, H, W)    uint8    class ids, 255 where unlabelled or absent (nearest)
    has_depth, has_labels (N,) bool   whether the source had that GT for the sample
    category    (N,)         int64    class index of the sample, -1 where none; only in
                                      caches with a source that carries one (a reader
                                      with yields_category = True: N-ImageNet)
    stamps, t0, t1 (N,) int64         window end, start and end (ns)
    sequence, position (N,) int64     source index, and index within that source

plus `index.json`: format version, the key parts, the shard files, per sequence its time
span and split boundary, and per sample its sequence, position, stamp, split and GT flags.

The folder is named by a key: a hash of the representation params, input size, window
params, validation fraction and each source's identity (the absolute path, size and mtime
of its files, and the reader's settings). Building with the same key finds the folder and
returns at once, decoding nothing; anything that changes the samples gives a new folder.
shard_size only changes the layout, so a cache is reused whatever shard_size it was built
with. The folder appears by an atomic rename once complete, so an interrupted or
concurrent build never leaves a half cache under the key.

The split is by time, never by random frames (neighbouring windows are near copies): in
each sequence the last `val_fraction` of its span [first t0, last t1] is validation, the
rest training, and the window straddling the boundary belongs to neither ('none'), so no
event is shared between the splits.
"""

import hashlib
import json
import logging
from pathlib import Path
import shutil
import tempfile

import numpy as np
from safetensors.torch import save_file
import torch
import torch.nn.functional as F  # noqa: N812 (the conventional alias)

from gep_model.events import fit_to_input, make_representation, Representation
from gep_model.events.fit import as_hw

from .bag_windows import window_params
from .sources import open_source

log = logging.getLogger('training.data')
FORMAT = 'gep-window-cache'
FORMAT_VERSION = 1
INDEX = 'index.json'
NO_LABEL = 255
SPLITS = ('train', 'val', 'none')


def as_source(source):
    """Return the reader of a source (training.data.sources.open_source).

    A bag or data set path, a {format, path, ...} mapping, or a reader (identity(),
    samples(window)) as is.
    """
    return open_source(source)


def cache_key(sources, representation, input_size, window, val_fraction):
    """Return (key, key parts): the folder name and the JSON it is the hash of."""
    rep = _representation(representation)
    parts = {'format_version': FORMAT_VERSION, 'representation': rep.params(),
             'input_size': list(as_hw(input_size)), 'window': window_params(window),
             'val_fraction': float(val_fraction),
             'sources': [as_source(s).identity() for s in sources]}
    text = json.dumps(parts, sort_keys=True, separators=(',', ':'))
    return hashlib.sha256(text.encode()).hexdigest()[:20], parts


def _representation(representation):
    if isinstance(representation, Representation):
        return representation
    return make_representation(**dict(representation))


def _resize_nearest(array, size):
    """(h, w) array -> (H, W) tensor by nearest neighbour at pixel centres; None stays."""
    if array is None:
        return None
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if tuple(tensor.shape) == tuple(size):
        return tensor.clone()
    return F.interpolate(tensor[None, None], size=size, mode='nearest-exact')[0, 0]


def render_sample(sample, rep, size, category=False):
    """Turn one sample dict into the cached tensors of one row (see the module docstring).

    category: add the sample's 'category' (-1 where it has none) as a column.
    """
    height, width = sample['sensor']
    events = rep.render_fitted(sample['events'], sample['t0'], sample['t1'], height, width,
                               size).to(torch.float16)  # as the pipeline renders it
    frame = torch.from_numpy(np.ascontiguousarray(sample['frame'])).permute(2, 0, 1)
    frame = fit_to_input(frame.float() / 255, size, 'resize')  # as the pipeline feeds it
    frame = (frame * 255).round().clamp(0, 255).to(torch.uint8)
    # Nearest neighbour keeps NaN holes and class ids intact, where bilinear would blend.
    depth = _resize_nearest(sample.get('depth'), size)
    labels = _resize_nearest(sample.get('labels'), size)
    row = {
        'events': events,
        'frames': frame,
        'depth': torch.full(size, float('nan')) if depth is None else depth.float(),
        'labels': (torch.full(size, NO_LABEL, dtype=torch.uint8) if labels is None
                   else labels.to(torch.uint8)),
        'has_depth': torch.tensor(depth is not None),
        'has_labels': torch.tensor(labels is not None),
        'stamps': torch.tensor(int(sample['stamp_ns'])),
        't0': torch.tensor(int(sample['t0'])),
        't1': torch.tensor(int(sample['t1'])),
    }
    if category:
        value = sample.get('category')
        row['category'] = torch.tensor(-1 if value is None else int(value))
    return row


def time_split(t0, t1, val_fraction):
    """Split one sequence's windows by time; return (splits, boundary_ns).

    t0, t1: (N,) int64 window bounds. The last val_fraction of [min t0, max t1] is 'val',
    windows ending at or before the boundary are 'train', a window across it is 'none'.
    """
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f'val_fraction must be within [0, 1], got {val_fraction}')
    if not len(t0):
        return [], None
    start, end = int(np.min(t0)), int(np.max(t1))
    boundary = end - int(round(val_fraction * (end - start)))
    splits = ['train' if b <= boundary else 'val' if a >= boundary else 'none'
              for a, b in zip(t0.tolist(), t1.tolist())]
    return splits, boundary


class _ShardWriter:
    """Collect rows and write them as numbered safetensors files of shard_size rows."""

    def __init__(self, folder, shard_size):
        self.folder, self.shard_size = folder, shard_size
        self.rows, self.files = [], []

    def add(self, row):
        self.rows.append(row)
        if len(self.rows) == self.shard_size:
            self.flush()

    def flush(self):
        if not self.rows:
            return
        name = f'shard_{len(self.files):05d}.safetensors'
        save_file({k: torch.stack([r[k] for r in self.rows]) for k in self.rows[0]},
                  str(self.folder / name))
        self.files.append(name)
        self.rows = []


def build_cache(sources, out_dir, representation, input_size, window=None, shard_size=256,
                val_fraction=0.2):
    """Build (or find) the cache of `sources` under out_dir; return its folder.

    sources: `data.sources` entries (training.data.sources: bag or data set paths,
    {format, path, ...} mappings) or readers; each is one sequence. representation: a
    Representation or its params dict (name included), e.g.
    gep_model.artifact.DEFAULT_REPRESENTATION. input_size: (H, W) or an int. window: the
    window dict of bag_windows.window_params.
    """
    if shard_size < 1:
        raise ValueError(f'shard_size must be at least 1, got {shard_size}')
    if not 0.0 <= val_fraction <= 1.0:
        raise ValueError(f'val_fraction must be within [0, 1], got {val_fraction}')
    sources = [as_source(s) for s in sources]
    key, parts = cache_key(sources, representation, input_size, window, val_fraction)
    out_dir = Path(out_dir)
    folder = out_dir / key
    if (folder / INDEX).is_file():
        log.info('window cache %s: reusing it', folder)
        return folder
    out_dir.mkdir(parents=True, exist_ok=True)
    rep, size = _representation(representation), as_hw(input_size)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{key}.', dir=out_dir))
    try:
        index = _write(tmp, sources, rep, size, parts, shard_size, val_fraction)
        index['key'] = key
        (tmp / INDEX).write_text(json.dumps(index))
        try:
            tmp.rename(folder)
        except OSError:
            if not (folder / INDEX).is_file():  # not a concurrent build that finished first
                raise
            log.info('window cache %s: built concurrently; keeping that one', folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _write(tmp, sources, rep, size, parts, shard_size, val_fraction):
    """Render every source into shards in tmp; return the index (without the key)."""
    shards = _ShardWriter(tmp, shard_size)
    columns = {'sequence': [], 'position': [], 'stamp_ns': [], 'split': [], 'has_depth': [],
               'has_labels': []}
    sequences = []
    window = parts['window']
    # A category column only where a source carries one, so other caches stay as they were.
    category = any(getattr(s, 'yields_category', False) for s in sources)
    if category:
        columns['category'] = []
    for seq, source in enumerate(sources):
        t0, t1 = [], []
        for position, sample in enumerate(source.samples(window)):
            row = render_sample(sample, rep, size, category)
            row['sequence'], row['position'] = torch.tensor(seq), torch.tensor(position)
            shards.add(row)
            t0.append(int(sample['t0']))
            t1.append(int(sample['t1']))
            columns['stamp_ns'].append(int(sample['stamp_ns']))
            columns['has_depth'].append(bool(row['has_depth']))
            columns['has_labels'].append(bool(row['has_labels']))
            if category:
                columns['category'].append(int(row['category']))
        splits, boundary = time_split(np.asarray(t0, np.int64), np.asarray(t1, np.int64),
                                      val_fraction)
        columns['sequence'] += [seq] * len(t0)
        columns['position'] += list(range(len(t0)))
        columns['split'] += splits
        sequences.append({'source': parts['sources'][seq], 'samples': len(t0),
                          'start_ns': min(t0, default=None), 'end_ns': max(t1, default=None),
                          'boundary_ns': boundary,
                          **{name: splits.count(name) for name in SPLITS}})
        log.info('window cache: sequence %d: %d windows (%d train, %d val)', seq, len(t0),
                 splits.count('train'), splits.count('val'))
    shards.flush()
    return {'format': FORMAT, 'format_version': FORMAT_VERSION, 'key_parts': parts,
            'count': len(columns['split']), 'shard_size': shard_size, 'shards': shards.files,
            'channels': rep.channels, 'input_size': list(size), 'sequences': sequences,
            'samples': columns}


def load_index(cache_dir):
    """Read and check a cache's index.json; ValueError naming the folder if unusable."""
    path = Path(cache_dir) / INDEX
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f'{cache_dir}: not a window cache ({exc}); build it with '
                         'build_cache') from None
    if index.get('format') != FORMAT or index.get('format_version') != FORMAT_VERSION:
        raise ValueError(f'{cache_dir}: cache format {index.get("format")} version '
                         f'{index.get("format_version")}, expected {FORMAT} version '
                         f'{FORMAT_VERSION}; rebuild it')
    return index
