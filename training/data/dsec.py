"""DSEC sequences as sample dicts: rectified events, rectified frames, semantic labels.

One DSEC sequence folder (the layout of the DSEC downloads, merged per sequence):

    events/left/events.h5        events/{p, t, x, y}: t in microseconds after t_offset;
                                 ms_to_idx[k]: first event with t >= k ms; t_offset (us)
    events/left/rectify_map.h5   rectify_map (H, W, 2) float: rectified (x, y) of each
                                 raw event pixel
    images/timestamps.txt        one timestamp per frame, microseconds (the events' clock)
    images/left/rectified/*.png  the frames, in name order
    semantic/.../11classes/*.png DSEC-Semantic labels (or 19classes), with their
                                 timestamps in a timestamps.txt or <seq>_semantic_
                                 timestamps.txt beside or above the class folder

`images` and `semantic` may live elsewhere (the downloads unpack per modality). Events are
rectified with the map (rounded to the nearest pixel, ties to even; events landing off the
sensor are dropped), so they share the labels' pixel grid. A window ends at each frame's
timestamp; events are sliced through ms_to_idx, reading only the millisecond blocks that
hold the window's ends instead of scanning the time array. Label ids are kept as stored;
labels are matched to the frame nearest in time (within half a frame), and DSEC-Semantic's
640 x 440 labels, the top rows of the 640 x 480 event frame, are padded with 255 (no label)
below. DSEC has no metric depth here (its GT is disparity), so depth is None.

The frames come from DSEC's RGB camera, beside the event camera. With the sequence's
calibration (calibration/cam_to_cam.yaml) each frame is warped into the rectified event
camera by the rotation-only homography of GEP's pre_dse.py:150-180 (an infinitely distant
plane: K_rect0 R K_rect1^-1, R the rectified RGB-to-event rotation), so that stage 1 can
compare tokens position by position; without the file the frames stay as they are, with a
warning. With `window.anchor: centre` a frame's window runs from the midpoint with the
previous frame to the midpoint with the next (GEP's pairing, pre_dse.py:197-202). Real DSEC
event files are Blosc-compressed and need the `hdf5plugin` package, imported when
installed.
"""

import logging
from pathlib import Path

import cv2
import h5py
import numpy as np
import yaml

from gep_ros.wire.events import EVENT_DTYPE

from .bag_windows import centred_bounds, file_identity, match_nearest, window_params

try:  # registers the Blosc filter of the real DSEC files with h5py
    import hdf5plugin  # noqa: F401
except ImportError:  # pragma: no cover - synthetic test files are uncompressed
    hdf5plugin = None

log = logging.getLogger('training.data')
US = 1000  # nanoseconds per microsecond
NO_LABEL = 255
TIMESTAMP_NAMES = ('timestamps.txt', 'semantic_timestamps.txt', '*_semantic_timestamps.txt')


class DsecEvents:
    """Random access to one DSEC events.h5 by time, through its ms_to_idx table."""

    def __init__(self, path):
        self.path = Path(path)
        try:
            self.file = h5py.File(self.path, 'r')
            self.t = self.file['events/t']
            self.ms_to_idx = np.asarray(self.file['ms_to_idx'], np.int64)
            self.t_offset_ns = int(np.asarray(self.file['t_offset'])) * US
        except (OSError, KeyError) as exc:
            raise ValueError(f'{self.path}: not a DSEC events file ({exc})') from None
        self.count = len(self.t)

    def close(self):
        self.file.close()

    def first_at_or_after(self, t_us):
        """Index of the first event with t >= t_us (int microseconds after t_offset)."""
        k = t_us // 1000
        if k < 0:
            return 0
        last = len(self.ms_to_idx) - 1
        lo = int(self.ms_to_idx[min(k, last)])
        hi = int(self.ms_to_idx[k + 1]) if k + 1 <= last else self.count
        return lo + int(np.searchsorted(self.t[lo:hi], t_us, 'left'))

    def window(self, end_ns, window, start_ns=None):
        """Return (events, t0): the window ending at end_ns, as bag_windows.window_slice.

        start_ns: the window is then start_ns < t <= end_ns (window.anchor centre).
        """
        try:
            return self._window(end_ns, window, start_ns)
        except OSError as exc:  # most often the Blosc filter missing
            raise ValueError(f'{self.path}: cannot read events ({exc}); DSEC files need '
                             '`pip install hdf5plugin`') from None

    def _window(self, end_ns, window, start_ns=None):
        end_us = (end_ns - self.t_offset_ns) // US  # events at or before end_ns
        hi = self.first_at_or_after(end_us + 1)
        if start_ns is not None:  # after start_ns (a centred window)
            t0_ns = start_ns
            lo = self.first_at_or_after((start_ns - self.t_offset_ns) // US + 1)
        elif window['events'] > 0:
            lo = max(hi - window['events'], 0)
        else:
            t0_ns = end_ns - int(window['duration_ms'] * 1e6)
            lo = self.first_at_or_after(-(-(t0_ns - self.t_offset_ns) // US))  # ceil
        events = np.empty(hi - lo, EVENT_DTYPE)
        for name in ('x', 'y', 'p'):
            events[name] = self.file[f'events/{name}'][lo:hi]
        events['t'] = self.t[lo:hi].astype(np.int64) * US + self.t_offset_ns
        if start_ns is None and window['events'] > 0:
            t0_ns = int(events['t'][0]) if len(events) else end_ns
        return events, t0_ns


def rectify(events, rectify_map):
    """Move events to their rectified pixels; drop those landing off the sensor.

    rectify_map: (H, W, 2) float, the rectified (x, y) of each raw pixel.
    """
    height, width = rectify_map.shape[:2]
    events = events[(events['x'] < width) & (events['y'] < height)]
    xy = np.rint(rectify_map[events['y'], events['x']])  # (N, 2)
    keep = (xy[:, 0] >= 0) & (xy[:, 0] < width) & (xy[:, 1] >= 0) & (xy[:, 1] < height)
    out = events[keep]
    out['x'], out['y'] = xy[keep, 0], xy[keep, 1]
    return out


def _camera_matrix(values, path, name):
    if len(values) != 4:
        raise ValueError(f'{path}: {name} camera_matrix must be [fx, fy, cx, cy]')
    fx, fy, cx, cy = (float(v) for v in values)
    return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]])


def frame_to_event_homography(calibration):
    """Return the 3x3 homography taking rectified RGB pixels to rectified event pixels.

    calibration: DSEC's cam_to_cam.yaml, as a path or a parsed dict. As GEP's
    pre_dse.py:_get_camera: T = R_rect1 T_10 R_rect0^-1 (event to RGB, rectified), and
    H = (K_rect1 R K_rect0^-1)^-1, K_rectN from intrinsics.camRectN.camera_matrix.
    """
    path = calibration
    if not isinstance(calibration, dict):
        try:
            calibration = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f'{path}: cannot read the DSEC calibration ({exc})') from None
    try:
        intr, extr = calibration['intrinsics'], calibration['extrinsics']
        k_event = _camera_matrix(intr['camRect0']['camera_matrix'], path, 'camRect0')
        k_image = _camera_matrix(intr['camRect1']['camera_matrix'], path, 'camRect1')
        t_10 = np.asarray(extr['T_10'], np.float64)
        r_rect0 = np.asarray(extr['R_rect0'], np.float64)
        r_rect1 = np.asarray(extr['R_rect1'], np.float64)
    except (KeyError, TypeError) as exc:
        raise ValueError(f'{path}: not a DSEC cam_to_cam.yaml (missing {exc})') from None
    rotation = r_rect1 @ t_10[:3, :3] @ np.linalg.inv(r_rect0)
    return np.linalg.inv(k_image @ rotation @ np.linalg.inv(k_event))


def warp_frame(frame, homography, sensor):
    """Warp an (H, W, 3) frame by `homography` onto the (height, width) event sensor grid.

    Bilinear, zeros outside the frame (GEP: cv2.warpPerspective, INTER_LINEAR,
    BORDER_CONSTANT, pre_dse.py:205-207).
    """
    height, width = sensor
    return cv2.warpPerspective(frame, homography, (width, height), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT)


def _timestamps_ns(path):
    return np.atleast_1d(np.loadtxt(path, dtype=np.int64)) * US


def _label_folder(semantic, classes):
    wanted = [classes] if classes else [11, 19]
    for n in wanted:
        found = sorted(p for p in semantic.rglob(f'{n}classes') if p.is_dir())
        if found:
            return found[0]
    if classes:
        raise ValueError(f'{semantic}: no {classes}classes folder')
    return None


def _label_timestamps(folder, semantic):
    for parent in [folder, *folder.parents]:
        for pattern in TIMESTAMP_NAMES:
            found = sorted(parent.glob(pattern))
            if found:
                return found[0]
        if parent == semantic:
            break
    raise ValueError(f'{folder}: no label timestamps file ({", ".join(TIMESTAMP_NAMES)}) '
                     f'in it or above it up to {semantic}')


def _pad_labels(labels, sensor, path):
    height, width = sensor
    if labels.shape[0] > height or labels.shape[1] > width:
        raise ValueError(f'{path}: labels {labels.shape} larger than the sensor {sensor}')
    return np.pad(labels, ((0, height - labels.shape[0]), (0, width - labels.shape[1])),
                  constant_values=NO_LABEL)


class DsecSequence:
    """One DSEC sequence as a cache source; iterating yields its sample dicts."""

    def __init__(self, root, images=None, semantic=None, classes=None, camera='left',
                 calibration=None, warp=None):
        """warp: None warps the frames when the calibration file exists, True requires it."""
        root = Path(root)
        self.calibration = Path(calibration) if calibration else (
            root / 'calibration' / 'cam_to_cam.yaml')
        self.warp = self.calibration.is_file() if warp is None else bool(warp)
        if self.warp and not self.calibration.is_file():
            raise ValueError(f'{root}: missing {self.calibration} (DSEC calibration), needed '
                             'to warp the frames into the event camera')
        if self.warp and camera != 'left':
            raise ValueError(f'{root}: the frame warp uses the left pair (cam0, cam1); '
                             f'camera {camera!r} needs warp=False')
        if not self.warp:
            log.warning('%s: frames not warped into the event camera (no calibration)', root)
        self.events_path = root / 'events' / camera / 'events.h5'
        self.map_path = root / 'events' / camera / 'rectify_map.h5'
        images = Path(images) if images else root / 'images'
        self.stamps_path = images / 'timestamps.txt'
        self.frame_paths = sorted((images / camera / 'rectified').glob('*.png'))
        for path in (self.events_path, self.map_path, self.stamps_path):
            if not path.is_file():
                raise ValueError(f'{root}: missing {path} (DSEC sequence layout)')
        if not self.frame_paths:
            raise ValueError(f'{root}: no frames in {images / camera / "rectified"}')
        self.label_paths, self.labels_stamps_path = [], None
        semantic = Path(semantic) if semantic else root / 'semantic'
        folder = _label_folder(semantic, classes) if semantic.is_dir() or classes else None
        if folder is not None:
            self.labels_stamps_path = _label_timestamps(folder, semantic)
            self.label_paths = sorted(folder.rglob('*.png'))
        self.classes = classes
        self.root = root

    def identity(self):
        files = [self.events_path, self.map_path, self.stamps_path, *self.frame_paths,
                 *self.label_paths] + ([self.labels_stamps_path] if self.label_paths else [])
        if self.warp:
            files.append(self.calibration)
        return {'kind': 'dsec', 'files': file_identity(files), 'classes': self.classes,
                'warp': self.warp}

    def samples(self, window=None):
        """Yield one sample dict per frame (bag_windows' format), in time order."""
        window = window_params(window)
        stamps = _timestamps_ns(self.stamps_path)
        if len(stamps) != len(self.frame_paths):
            raise ValueError(f'{self.stamps_path}: {len(stamps)} timestamps for '
                             f'{len(self.frame_paths)} frames')
        label_of = np.full(len(stamps), -1)
        if self.label_paths:
            label_stamps = _timestamps_ns(self.labels_stamps_path)
            if len(label_stamps) != len(self.label_paths):
                raise ValueError(f'{self.labels_stamps_path}: {len(label_stamps)} timestamps '
                                 f'for {len(self.label_paths)} label images')
            tolerance = np.median(np.diff(stamps)) / 2 if len(stamps) > 1 else 0
            label_of = match_nearest(label_stamps, stamps, tolerance)
        with h5py.File(self.map_path, 'r') as f:
            rectify_map = np.asarray(f['rectify_map'], np.float32)
        sensor = rectify_map.shape[:2]
        homography = frame_to_event_homography(self.calibration) if self.warp else None
        order = np.argsort(stamps, kind='stable')
        starts, ends = centred_bounds(stamps[order])
        events = DsecEvents(self.events_path)
        try:
            for k, i in enumerate(order):
                stamp = int(stamps[i])
                if window['anchor'] == 'centre':
                    end = int(ends[k])
                    raw, t0 = events.window(end, window, int(starts[k]))
                else:
                    end = stamp
                    raw, t0 = events.window(stamp, window)
                labels = None
                if label_of[i] >= 0:
                    path = self.label_paths[label_of[i]]
                    labels = _pad_labels(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), sensor,
                                         path)
                frame = cv2.imread(str(self.frame_paths[i]), cv2.IMREAD_COLOR)
                if frame is None:
                    raise ValueError(f'{self.frame_paths[i]}: not a readable image')
                frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                if homography is not None:
                    frame = warp_frame(frame, homography, sensor)
                yield {'stamp_ns': stamp, 't0': t0, 't1': end,
                       'events': rectify(raw, rectify_map), 'sensor': sensor,
                       'frame': frame, 'depth': None,
                       'labels': labels}
        finally:
            events.close()

    def __iter__(self):
        return self.samples()
