"""DDD17 segmentation sequences as sample dicts: DAVIS346 events, APS frames, 6-class labels.

One DDD17 sequence folder `dirN` of the Ev-SegNet segmentation release as ESS and GEP
use it (GEP's src/pre_ddd.py:33-41, src/dataset.py:664-704):

    events.dat.t              int64 (M,) event times, nanoseconds, sorted
    events.dat.xyp            int16 (M, 3) [x, y, polarity in {0, 1}]; both raw memmaps,
                              M = size of events.dat.t / 8
    index/index_<n>ms.npy     (F, 3) per frame j: [timestamp ns, then two event indices:
                              GEP renders events[col 2:col 1], pre_ddd.py:121-127]; the
                              frame's id is j + 1 (pre_ddd.py:134)
    imgs/*.png                the grey APS frames, named by frame id: img_00000012.png
                              (dir0, dir1) or 0000000012.png (dataset.py:692-695); the
                              imgs/*.jpg beside them are GEP's rendered event images,
                              not read here
    segmentation_masks/segmentation_00000012.png   labels of frame 12, 0..5 (DDD17_6)

Windows end at the frame timestamps (the index's first column) and are cut from the event
times by the config's window, as for DSEC and MVSEC; GEP renders 250 ms of events per frame
(index_250ms.npy, pre_ddd.py:35, 121-127), so the DDD17 configs set duration_ms 250.
The sensor is 260 x 346 (pre_ddd.py:170); Ev-SegNet's labels cover the top 200 rows (the
car's bonnet below is cut) and are padded with 255 (no label) below, as DSEC's. A frame id
without its png gets a black frame (logged): the fine-tuning stage is event-only; stage 1
needs the frames. `labelled_only` keeps only frames with a mask.
"""

import logging
from pathlib import Path
import re

import cv2
import numpy as np

from gep_ros.wire.events import EVENT_DTYPE

from .bag_windows import centred_bounds, file_identity, window_params, window_slice

log = logging.getLogger('training.data')
NO_LABEL = 255
SENSOR = (260, 346)  # DAVIS346, pre_ddd.py:170
FRAME_NAME = re.compile(r'^(?:img_)?(\d+)$')
MASK_NAME = re.compile(r'^segmentation_(\d+)$')


def _by_id(folder, pattern, suffix='.png'):
    """{frame id: path} of the files in folder whose stem matches pattern."""
    out = {}
    for path in sorted(folder.glob(f'*{suffix}')) if folder.is_dir() else []:
        match = pattern.match(path.stem)
        if match:
            out[int(match.group(1))] = path
    return out


def _index_file(root):
    found = sorted((root / 'index').glob('index_*ms.npy'))
    preferred = [p for p in found if p.name == 'index_50ms.npy']
    if not (preferred or found):
        raise ValueError(f'{root}: no index/index_<n>ms.npy (DDD17 segmentation layout)')
    return (preferred or found)[0]


def pad_labels(labels, sensor, path):
    """Pad (h, w) labels below and right with 255 to the (H, W) sensor."""
    height, width = sensor
    if labels is None:
        raise ValueError(f'{path}: not a readable label image')
    if labels.shape[0] > height or labels.shape[1] > width:
        raise ValueError(f'{path}: labels {labels.shape} larger than the sensor {sensor}')
    return np.pad(labels, ((0, height - labels.shape[0]), (0, width - labels.shape[1])),
                  constant_values=NO_LABEL)


class Ddd17Sequence:
    """One DDD17 `dirN` folder as a cache source; iterating yields its sample dicts."""

    def __init__(self, root, labelled_only=False, sensor=SENSOR):
        root = Path(root)
        self.t_path, self.xyp_path = root / 'events.dat.t', root / 'events.dat.xyp'
        for path in (self.t_path, self.xyp_path):
            if not path.is_file():
                raise ValueError(f'{root}: missing {path.name} (DDD17 segmentation layout)')
        self.index_path = _index_file(root)
        self.frames = {**_by_id(root / 'images', FRAME_NAME), **_by_id(root / 'imgs', FRAME_NAME)}
        self.masks = _by_id(root / 'segmentation_masks', MASK_NAME)
        self.labelled_only = bool(labelled_only)
        self.sensor = tuple(int(s) for s in sensor)
        if len(self.sensor) != 2:
            raise ValueError(f'{root}: sensor must be [height, width], got {sensor!r}')
        self.root = root

    def identity(self):
        files = [self.t_path, self.xyp_path, self.index_path, *self.frames.values(),
                 *self.masks.values()]
        return {'kind': 'ddd17', 'files': file_identity(files),
                'labelled_only': self.labelled_only, 'sensor': list(self.sensor)}

    def _events(self):
        count = self.t_path.stat().st_size // 8
        if self.xyp_path.stat().st_size != count * 6:
            raise ValueError(f'{self.xyp_path}: {self.xyp_path.stat().st_size} bytes, expected '
                             f'{count * 6} (3 int16 per event of {self.t_path.name})')
        if not count:
            return np.zeros(0, np.int64), np.zeros((0, 3), np.int16)
        return (np.memmap(self.t_path, np.int64, 'r', shape=(count,)),
                np.memmap(self.xyp_path, np.int16, 'r', shape=(count, 3)))

    def samples(self, window=None):
        """Yield one sample dict per frame of the index (bag_windows' format), in time order."""
        window = window_params(window)
        index = np.load(self.index_path)
        if index.ndim != 2 or index.shape[1] < 1:
            raise ValueError(f'{self.index_path}: expected (frames, 3) rows, got {index.shape}')
        stamps = index[:, 0].astype(np.int64)  # row j: frame id j + 1
        times, xyp = self._events()
        starts, stops = centred_bounds(stamps)
        missing = 0
        for j, stamp in enumerate(stamps.tolist()):
            frame_id = j + 1
            mask = self.masks.get(frame_id)
            if self.labelled_only and mask is None:
                continue
            if window['anchor'] == 'centre':
                t1 = int(stops[j])
                lo = int(np.searchsorted(times, int(starts[j]), 'right'))
                hi, t0 = int(np.searchsorted(times, t1, 'right')), int(starts[j])
            else:
                t1 = stamp
                lo, hi, t0 = window_slice(times, stamp, window)
            events = np.empty(hi - lo, EVENT_DTYPE)
            events['t'] = times[lo:hi]
            block = np.asarray(xyp[lo:hi])
            events['x'], events['y'], events['p'] = block[:, 0], block[:, 1], block[:, 2] > 0
            frame = self._frame(frame_id)
            missing += frame is None
            if frame is None:
                frame = np.zeros((*self.sensor, 3), np.uint8)
            labels = None
            if mask is not None:
                labels = pad_labels(cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE), self.sensor,
                                    mask)
            yield {'stamp_ns': stamp, 't0': t0, 't1': t1, 'events': events,
                   'sensor': self.sensor, 'frame': frame, 'depth': None, 'labels': labels}
        if missing:
            log.warning('%s: %d windows without their APS frame (black frames)', self.root,
                        missing)

    def _frame(self, frame_id):
        path = self.frames.get(frame_id)
        if path is None:
            return None
        grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if grey is None:
            raise ValueError(f'{path}: not a readable image')
        return np.repeat(grey[..., None], 3, axis=2)

    def __iter__(self):
        return self.samples()
