"""Training checkpoints: written atomically, loaded with `torch.load(weights_only=True)`.

A checkpoint holds what a resume needs to continue the same run: model and optimizer state,
the step, the config it was started with, and every random number generator's state. It is
written to a temporary file in the same folder, flushed to disk and renamed over the old
one, so a process killed while writing never replaces the last good checkpoint. Everything
in it is a tensor or a plain container, so loading executes no code.
"""

import os
from pathlib import Path
import random

import numpy as np
import torch

LAST = 'last.pt'


def rng_state():
    """Return the torch, numpy and Python RNG states as tensors and plain values."""
    np_state = np.random.get_state()
    state = {
        'torch': torch.get_rng_state(),
        'numpy_keys': torch.from_numpy(np_state[1].astype(np.int64)),
        'numpy_pos': int(np_state[2]),
        'numpy_gauss': [int(np_state[3]), float(np_state[4])],
        'python': _python_state(),
    }
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def _python_state():
    version, internal, gauss = random.getstate()
    return {'version': version, 'internal': list(internal), 'gauss': gauss}


def set_rng_state(state):
    torch.set_rng_state(state['torch'])
    keys = state['numpy_keys'].numpy().astype(np.uint32)
    has_gauss, cached = state['numpy_gauss']
    np.random.set_state(('MT19937', keys, state['numpy_pos'], has_gauss, cached))
    py = state['python']
    random.setstate((py['version'], tuple(py['internal']), py['gauss']))
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def save_checkpoint(folder, payload, name=LAST):
    """Write `payload` (a dict of tensors and plain values) atomically to folder/name."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(f'.{name}.tmp.*'):  # left by a process killed mid-write
        stale.unlink(missing_ok=True)
    path = folder / name
    tmp = folder / f'.{name}.tmp.{os.getpid()}'
    with open(tmp, 'wb') as f:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def checkpoint_file(path):
    """Return the checkpoint a path names: a run folder's LAST, or the file itself."""
    path = Path(path)
    return path / LAST if path.is_dir() else path


def load_checkpoint(path, map_location='cpu'):
    """Load a checkpoint without executing code (weights_only)."""
    return torch.load(path, map_location=map_location, weights_only=True)
