"""N-ImageNet split folders as sample dicts: one window per event file, with its category.

One N-ImageNet split folder (the layout of the N-ImageNet release, extracted, and what GEP
reads: src/pre_nim.py:56-66, 133-134, src/dataset.py:234-275):

    <split>/<wnid>/<name>.npz   event_data: structured (N,) with fields x, y, t, p;
                                t in microseconds, p in {0, 1} (or bool); 480 x 640 sensor
                                (pre_nim.py:146 renders every file at 480 x 640)
    <split>/<wnid>/<name>.JPEG  the ImageNet image the events were recorded from, when
                                present (GEP's extracted_* folders hold it beside the
                                events, dataset.py:256-260); otherwise under `images`, as
                                <images>/<wnid>/<name>.JPEG or <images>/<name>.JPEG

Each event file is one sample whose window is the whole file (GEP renders all of a file's
events into one image, pre_nim.py:131-146). The category is the class folder's index: in
the `class_index` JSON when given (ImageNet's {"0": ["n01440764", "tench"], ...}, the
format of GEP's src/imagenet_class_index.json), otherwise the folder's rank among the
sorted folder names, which is ImageNet's order when all 1000 folders are present. (GEP's
NIMAClsDataset numbers the folders in os.listdir order, dataset.py:250, which depends on
the file system; we do not.) A file without its image gets a black frame (logged).

The files are independent recordings, while the cache splits each source by time. So the
samples are laid one after another on one clock (each shifted to start 1 ms after the
previous one ends), in round-robin order over the classes (the first file of every class,
then the second, ...), so that the cache's last-fraction validation split takes files of
every class. `limit` keeps the first files of each class (for small runs).
"""

import json
import logging
from pathlib import Path

import cv2
import numpy as np

from gep_ros.wire.events import EVENT_DTYPE

from .bag_windows import file_identity

log = logging.getLogger('training.data')
US = 1000  # nanoseconds per microsecond
SENSOR = (480, 640)  # pre_nim.py:146
GAP_NS = 1_000_000  # between consecutive samples on the shared clock
IMAGE_SUFFIXES = ('.JPEG', '.jpeg', '.jpg', '.png')


def load_class_index(path):
    """Return {wnid: category} from an ImageNet class index JSON ({"0": [wnid, name]})."""
    try:
        table = json.loads(Path(path).read_text())
        return {str(entry[0]): int(key) for key, entry in table.items()}
    except (OSError, ValueError, TypeError, IndexError, AttributeError) as exc:
        raise ValueError(f'{path}: not an ImageNet class index JSON ({{"0": ["n01440764", '
                         f'"tench"], ...}}): {exc}') from None


def read_events(path):
    """Return one N-ImageNet .npz file's events (EVENT_DTYPE, t in ns), sorted by time."""
    try:
        with np.load(path) as npz:
            data = npz['event_data'] if 'event_data' in npz else npz[npz.files[0]]
    except (OSError, ValueError, IndexError) as exc:
        raise ValueError(f'{path}: not an N-ImageNet event file ({exc})') from None
    if not data.dtype.names or not {'x', 'y', 't', 'p'} <= set(data.dtype.names):
        raise ValueError(f'{path}: event_data needs fields x, y, t, p; has {data.dtype.names}')
    events = np.empty(len(data), EVENT_DTYPE)
    events['x'], events['y'] = data['x'], data['y']
    events['t'] = np.asarray(data['t'], np.int64) * US
    events['p'] = np.asarray(data['p']) > 0
    return events[np.argsort(events['t'], kind='stable')]


class NImageNetFolder:
    """One N-ImageNet split folder as a cache source; iterating yields its sample dicts."""

    yields_category = True

    def __init__(self, root, class_index=None, images=None, limit=None, sensor=SENSOR):
        root = Path(root)
        if not root.is_dir():
            raise ValueError(f'{root}: no such N-ImageNet split folder')
        self.class_index = Path(class_index) if class_index else None
        classes = sorted(p for p in root.iterdir() if p.is_dir() and any(p.glob('*.npz')))
        if not classes:
            raise ValueError(f'{root}: no class folders with .npz event files '
                             '(N-ImageNet layout <split>/<wnid>/<name>.npz)')
        table = (load_class_index(self.class_index) if self.class_index
                 else {p.name: k for k, p in enumerate(classes)})
        unknown = [p.name for p in classes if p.name not in table]
        if unknown:
            raise ValueError(f'{root}: class folder {unknown[0]!r} is not in '
                             f'{self.class_index}')
        if limit is not None and int(limit) < 1:
            raise ValueError(f'{root}: limit must be at least 1, got {limit}')
        per_class = [sorted(p.glob('*.npz'))[:limit and int(limit)] for p in classes]
        self.files = []  # (path, category) in round-robin class order
        for k in range(max(len(files) for files in per_class)):
            self.files += [(files[k], table[p.name]) for p, files in zip(classes, per_class)
                           if k < len(files)]
        self.images = Path(images) if images else None
        self.limit = None if limit is None else int(limit)
        self.sensor = tuple(int(s) for s in sensor)
        self.root = root
        self._image_of = None

    def image_path(self, events_path):
        """Return the ImageNet image of an event file, or None."""
        folders = [events_path.parent]
        if self.images:
            folders += [self.images / events_path.parent.name, self.images]
        for folder in folders:
            for suffix in IMAGE_SUFFIXES:
                path = folder / (events_path.stem + suffix)
                if path.is_file() and (folder != events_path.parent or suffix != '.png'):
                    return path  # a .png beside the events is GEP's rendered event image
        return None

    def _images(self):
        """Return {file: its image or None}, looked up once (the folders are large)."""
        if self._image_of is None:
            self._image_of = {p: self.image_path(p) for p, _ in self.files}
        return self._image_of

    def identity(self):
        paths = [p for p, _ in self.files]
        images = [i for i in map(self._images().get, paths) if i]
        return {'kind': 'nimagenet', 'files': file_identity(paths + images),
                'class_index': (file_identity([self.class_index]) if self.class_index
                                else None), 'limit': self.limit, 'sensor': list(self.sensor)}

    def samples(self, window=None):
        """Yield one sample dict per event file; the window is the whole file."""
        clock, missing = 0, 0
        for path, category in self.files:
            events = read_events(path)
            if len(events):
                events['t'] += clock - events['t'][0]
            t0, t1 = clock, int(events['t'][-1]) if len(events) else clock
            image = self._images()[path]
            frame = cv2.imread(str(image), cv2.IMREAD_COLOR) if image else None
            if image and frame is None:
                raise ValueError(f'{image}: not a readable image')
            if frame is None:
                missing += 1
                frame = np.zeros((*self.sensor, 3), np.uint8)
            else:
                frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            yield {'stamp_ns': t1, 't0': t0, 't1': t1, 'events': events,
                   'sensor': self.sensor, 'frame': frame, 'depth': None, 'labels': None,
                   'category': category}
            clock = t1 + GAP_NS
        if missing:
            log.warning('%s: %d event files without their image (black frames)', self.root,
                        missing)

    def __iter__(self):
        return self.samples()
