"""What a `data.sources` entry may be, and the reader it opens.

An entry is one of:

    a path      a bag (ROS 1 .bag, a ROS 2 bag folder or its .db3 / .mcap file), or a data
                set recognised by its layout:
                  dsec       a sequence folder holding events/left/events.h5
                  mvsec      a <seq>_data.hdf5 file (its <seq>_gt.hdf5 beside it is used
                             when present)
                  ddd17      a dirN folder holding events.dat.t
                  nimagenet  a split folder of class folders holding .npz event files
    a mapping   {format: <one of the above or bag>, path: ..., <reader options>}: the
                options are the reader's keyword arguments (DsecSequence, MvsecSequence,
                Ddd17Sequence, NImageNetFolder, BagSource), e.g.
                {format: mvsec, path: a_data.hdf5, gt_path: a_gt.hdf5, camera: right}
    a reader    any object with identity() and samples(window), as is

Anything else is one ValueError naming the entry and what was expected. A bag path still
becomes BagSource(path), with the identity it always had, so existing caches stay valid.
"""

import inspect
import os
from pathlib import Path

from .bag_windows import BagSource
from .ddd17 import Ddd17Sequence
from .dsec import DsecSequence
from .mvsec import MvsecSequence
from .nimagenet import NImageNetFolder

BAG_SUFFIXES = ('.bag', '.db3', '.mcap')
EXPECTED = ('a bag (.bag, .db3, .mcap, or a ROS 2 bag folder), a DSEC sequence folder '
            '(events/left/events.h5), an MVSEC <seq>_data.hdf5, a DDD17 dirN folder '
            '(events.dat.t), an N-ImageNet split folder (<wnid>/*.npz), or a mapping '
            '{format: bag|dsec|mvsec|ddd17|nimagenet, path: ..., <reader options>}')


def _mvsec(path, **options):
    gt = Path(str(path)[:-len('_data.hdf5')] + '_gt.hdf5')
    if 'gt_path' not in options and str(path).endswith('_data.hdf5') and gt.is_file():
        options['gt_path'] = gt
    return MvsecSequence(path, **options)


READERS = {'bag': BagSource, 'dsec': DsecSequence, 'mvsec': _mvsec, 'ddd17': Ddd17Sequence,
           'nimagenet': NImageNetFolder}
OPTIONS = {'mvsec': MvsecSequence}  # where the reader's signature lives, if not in READERS


def _is_bag(path):
    if path.is_file():
        return path.suffix in BAG_SUFFIXES
    return path.is_dir() and ((path / 'metadata.yaml').is_file() or any(
        p.suffix in ('.db3', '.mcap') for p in path.iterdir()))


def detect_format(path):
    """Return the format name of an existing path by its layout, or None."""
    path = Path(path)
    if path.is_file() and path.name.endswith('_data.hdf5'):
        return 'mvsec'
    if path.is_dir():
        if (path / 'events' / 'left' / 'events.h5').is_file():
            return 'dsec'
        if (path / 'events.dat.t').is_file():
            return 'ddd17'
        if any(p.is_dir() and any(p.glob('*.npz')) for p in path.iterdir()):
            return 'nimagenet'
    return 'bag' if _is_bag(path) else None


def _options(name, options, entry):
    params = inspect.signature(OPTIONS.get(name, READERS[name])).parameters
    known = [k for k in params if k not in ('self', 'path', 'root', 'data_path')]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f'data source {entry!r}: unknown {name} option {unknown[0]!r} '
                         f'(known: {", ".join(known)})')
    return options


def open_source(entry):
    """Return the reader of one `data.sources` entry (see the module docstring)."""
    if hasattr(entry, 'identity') and hasattr(entry, 'samples'):
        return entry
    if isinstance(entry, dict):
        options = dict(entry)
        name, path = options.pop('format', None), options.pop('path', None)
        if name not in READERS or not isinstance(path, (str, os.PathLike)):
            raise ValueError(f'data source {entry!r}: a mapping needs format (one of '
                             f'{", ".join(READERS)}) and path')
        if not Path(path).exists():
            raise ValueError(f'data source {entry!r}: {path}: no such file or folder')
        return READERS[name](path, **_options(name, options, entry))
    if isinstance(entry, (str, os.PathLike)):
        path = Path(entry)
        if not path.exists():
            raise ValueError(f'data source {str(entry)!r}: no such file or folder; expected '
                             f'{EXPECTED}')
        name = detect_format(path)
        if name is None:
            raise ValueError(f'data source {str(entry)!r}: not recognised; expected '
                             f'{EXPECTED}')
        return READERS[name](path)
    raise ValueError(f'data source {entry!r}: expected {EXPECTED}')
