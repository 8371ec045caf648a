"""MVSEC sequences as sample dicts: DAVIS events and frames with lidar depth.

One MVSEC sequence is two HDF5 files (the layout of the MVSEC downloads):

    <seq>_data.hdf5  davis/<camera>/events          (N, 4) float64 [x, y, t s, p in {-1, 1}]
                     davis/<camera>/image_raw       (M, H, W) uint8 grey frames
                     davis/<camera>/image_raw_ts    (M,) float64 seconds
    <seq>_gt.hdf5    davis/<camera>/depth_image_rect     (K, H, W) float32 metres, NaN
                                                         where the lidar saw nothing
                     davis/<camera>/depth_image_rect_ts  (K,) float64 seconds

Windows end at the depth timestamps (`align='depth'`, the default with a GT file: every
depth map gets its window) or at the frame timestamps (`align='image'`). The other stream
is matched by nearest timestamp within half of its own frame interval: a depth map without
a frame that close is skipped, a frame without a depth map gets depth None. Times become
int64 nanoseconds (rounded); polarity -1 / 1 becomes 0 / 1. Events are read forwards in
blocks, holding only what the current window needs, since the event array is large and
its rows interleave the time column with the others.

Note that MVSEC's depth_image_rect lies on the rectified pixel grid while events and
image_raw are on the raw (distorted) one; the difference is small at the image centre.
"""

from pathlib import Path

import h5py
import numpy as np

from gep_ros.wire.events import EVENT_DTYPE

from .bag_windows import (centred_bounds, file_identity, match_nearest, window_params,
                          window_slice)

BLOCK = 1 << 20  # event rows read at a time


def seconds_to_ns(seconds):
    return np.round(np.asarray(seconds, np.float64) * 1e9).astype(np.int64)


class _ForwardEvents:
    """Windows with non-decreasing ends from an (N, 4) MVSEC event dataset, read in blocks."""

    def __init__(self, dataset):
        self.dataset = dataset
        self.next_row = 0  # first row not read yet
        self.events = np.empty(0, EVENT_DTYPE)  # rows read and still needed, time-sorted

    def _read_block(self):
        rows = np.asarray(self.dataset[self.next_row:self.next_row + BLOCK], np.float64)
        self.next_row += len(rows)
        block = np.empty(len(rows), EVENT_DTYPE)
        block['x'], block['y'] = rows[:, 0], rows[:, 1]
        block['t'] = seconds_to_ns(rows[:, 2])
        block['p'] = rows[:, 3] > 0
        self.events = np.concatenate([self.events, block])

    def window(self, end_ns, window, start_ns=None):
        """Return (events, t0) of the window ending at end_ns (as window_slice).

        start_ns: the window is then start_ns < t <= end_ns (window.anchor centre).
        """
        while self.next_row < len(self.dataset) and (
                not len(self.events) or self.events['t'][-1] <= end_ns):
            self._read_block()
        if start_ns is None:
            lo, hi, t0 = window_slice(self.events['t'], end_ns, window)
        else:
            times = self.events['t']
            lo = int(np.searchsorted(times, start_ns, 'right'))
            hi, t0 = int(np.searchsorted(times, end_ns, 'right')), start_ns
        out = self.events[lo:hi].copy()
        self.events = self.events[lo:]  # later windows start no earlier
        return out, t0


class MvsecSequence:
    """One MVSEC sequence as a cache source; iterating yields its sample dicts."""

    def __init__(self, data_path, gt_path=None, camera='left', align=None):
        self.data_path = Path(data_path)
        self.gt_path = Path(gt_path) if gt_path else None
        for path in filter(None, (self.data_path, self.gt_path)):
            if not path.is_file():
                raise ValueError(f'{path}: no such MVSEC file')
        self.align = align or ('depth' if self.gt_path else 'image')
        if self.align not in ('depth', 'image') or (self.align == 'depth' and not gt_path):
            raise ValueError(f"align must be 'image', or 'depth' with a gt file; got "
                             f'{self.align!r}')
        self.camera = camera

    def identity(self):
        files = [p for p in (self.data_path, self.gt_path) if p]
        return {'kind': 'mvsec', 'files': file_identity(files), 'camera': self.camera,
                'align': self.align}

    def _open(self, path, names):
        f = h5py.File(path, 'r')
        group = f'davis/{self.camera}'
        missing = [n for n in names if f'{group}/{n}' not in f]
        if missing:
            f.close()
            raise ValueError(f'{path}: no {group}/{missing[0]} (MVSEC layout)')
        return f, [f[f'{group}/{n}'] for n in names]

    def samples(self, window=None):
        """Yield one sample dict per window (bag_windows' format), in time order."""
        window = window_params(window)
        data, (events, images, image_ts) = self._open(
            self.data_path, ('events', 'image_raw', 'image_raw_ts'))
        gt, depth, depth_ts = None, None, np.zeros(0, np.int64)
        try:
            if self.gt_path:
                gt, (depth, depth_ts) = self._open(
                    self.gt_path, ('depth_image_rect', 'depth_image_rect_ts'))
                depth_ts = seconds_to_ns(depth_ts[()])
            image_ts = seconds_to_ns(image_ts[()])
            ends = depth_ts if self.align == 'depth' else image_ts
            ends = ends[np.argsort(ends, kind='stable')]
            frame_of = match_nearest(image_ts, ends)
            depth_of = match_nearest(depth_ts, ends)
            stream = _ForwardEvents(events)
            sensor = tuple(images.shape[1:3])
            starts, stops = centred_bounds(ends)
            for k, (end, f, d) in enumerate(zip(ends.tolist(), frame_of.tolist(),
                                                depth_of.tolist())):
                if f < 0:
                    continue  # no frame within half a frame interval
                if window['anchor'] == 'centre':
                    window_events, t0 = stream.window(int(stops[k]), window, int(starts[k]))
                else:
                    window_events, t0 = stream.window(end, window)
                grey = np.asarray(images[f], np.uint8)
                metres = None
                if d >= 0:
                    metres = np.array(depth[d], np.float32)
                    metres[~(np.isfinite(metres) & (metres > 0))] = np.nan
                t1 = int(stops[k]) if window['anchor'] == 'centre' else end
                yield {'stamp_ns': end, 't0': t0, 't1': t1, 'events': window_events,
                       'sensor': sensor, 'frame': np.repeat(grey[..., None], 3, axis=2),
                       'depth': metres, 'labels': None}
        finally:
            data.close()
            if gt is not None:
                gt.close()

    def __iter__(self):
        return self.samples()
