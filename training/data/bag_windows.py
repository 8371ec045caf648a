"""Paired training samples from a bag: the robot's own event windows, its frames, its GT.

`iter_bag_windows` replays a bag through the `WindowCutter` that the perception pipeline
uses (gep_ros.windows), in image mode, so a model is trained on exactly the windows it will
see on the robot: one per frame, ending at the frame's stamp. Each window becomes a sample
dict, the one format every data source here yields (DSEC, MVSEC and bags alike):

    stamp_ns  int             window end (the frame's header stamp), nanoseconds
    t0, t1    int             window start and end, nanoseconds (events have t0 <= t <= t1)
    events    (N,) EVENT_DTYPE
    sensor    (H, W)          event sensor size
    frame     (Hf, Wf, 3)     uint8 RGB
    depth     (Hf, Wf)        float32 metres, NaN where invalid; None without depth GT
    labels    (Hf, Wf)        uint8 class ids; None without label GT

Depth and labels come from their own image topics and belong to the frame with the very
same header stamp. Topics left as None are found by type (see `find_topics`); '' turns a
GT topic off. The module also holds the window arithmetic shared by the HDF5 readers, so
that a window means the same thing whichever source it is cut from.
"""

from collections import deque, OrderedDict
import logging
import os
from pathlib import Path

import numpy as np

from gep_ros.bag import BagReader
from gep_ros.msgtypes import EVENT_ARRAY, EVENT_PACKET
from gep_ros.params import make_params
from gep_ros.topics import depth_metres, find_topics, label_ids
from gep_ros.windows import WindowCutter
from gep_ros.wire.cdr import WireError
from gep_ros.wire.image import decode_image, image_to_rgb

log = logging.getLogger('training.data')
MS = 1_000_000
WINDOW_DEFAULTS = {'duration_ms': 50.0, 'events': 0, 'anchor': 'end'}
WINDOW_KEYS = ('duration_ms', 'events', 'max_lag_ms', 'anchor')
ANCHORS = ('end', 'centre')
# Offline nothing may be dropped: a buffer that never overflows or ages out a window still
# to be cut, and a frame queue that never fills. keep_ms only bounds memory on long bags.
OFFLINE = {'buffer.max_events': 1 << 40, 'buffer.keep_ms': 10_000.0, 'queue_size': 1 << 30}
GT_WAIT_NS = 1_000_000_000  # receive time a cut window waits for its depth and labels
GT_KEEP = 64  # GT messages kept per topic while waiting for their frame's window


def window_params(window=None):
    """Return the window dict with defaults filled in; ValueError for unknown keys.

    duration_ms: window length; events: if > 0, a window is the last N events instead;
    max_lag_ms (bags only): how long a frame waits for its events, as in the pipeline;
    anchor: 'end', the window ends at the frame's stamp (what the robot's node cuts), or
    'centre', from the midpoint with the previous frame to the midpoint with the next one
    (GEP's pairing, pre_dse.py:197-202; data sets read whole: DSEC, MVSEC), duration and
    events then unused.
    """
    window = dict(window or {})
    unknown = sorted(set(window) - set(WINDOW_KEYS))
    if unknown:
        raise ValueError(f'window: unknown key {unknown[0]!r} (known: {", ".join(WINDOW_KEYS)})')
    out = {**WINDOW_DEFAULTS, **window}
    out['duration_ms'] = float(out['duration_ms'])
    out['events'] = int(out['events'])
    if out['duration_ms'] <= 0 or out['events'] < 0:
        raise ValueError(f'window: need duration_ms > 0 and events >= 0, got {out}')
    if out['anchor'] not in ANCHORS:
        raise ValueError(f'window.anchor: {out["anchor"]!r} is not one of {", ".join(ANCHORS)}')
    return out


def centred_bounds(stamps):
    """Return (t0, t1) int64 arrays: each frame's window from midpoint to midpoint.

    stamps: (M,) sorted int64 ns. Frame j's window is (mid(j-1, j), mid(j, j+1)]; the first
    and last frames take half their one neighbour interval on their open side (a single
    frame: an empty window at its stamp).
    """
    stamps = np.asarray(stamps, np.int64)
    if len(stamps) < 2:
        return stamps.copy(), stamps.copy()
    mids = stamps[:-1] + (stamps[1:] - stamps[:-1]) // 2
    t0 = np.concatenate([[stamps[0] - (stamps[1] - stamps[0]) // 2], mids])
    t1 = np.concatenate([mids, [stamps[-1] + (stamps[-1] - stamps[-2]) // 2]])
    return t0, t1


def window_slice(times, end_ns, window):
    """Return (lo, hi, t0): the window ending at end_ns in sorted event times (int64 ns).

    The rule is EventBuffer's: t0 = end - duration and t0 <= t <= end, or with `events` N > 0
    the last N events at or before end, t0 being the earliest of them (end if none).
    """
    hi = int(np.searchsorted(times, end_ns, 'right'))
    if window['events'] > 0:
        lo = max(hi - window['events'], 0)
        return lo, hi, int(times[lo]) if hi > lo else int(end_ns)
    t0 = int(end_ns) - int(window['duration_ms'] * MS)
    return int(np.searchsorted(times, t0, 'left')), hi, t0


def match_nearest(stamps, targets, tolerance=None):
    """Index into `stamps` nearest to each target, -1 where none is within tolerance.

    stamps: (M,) int64; targets: (K,) int64. tolerance defaults to half the median spacing
    of `stamps` (half a frame). Ties go to the earlier stamp.
    """
    stamps, targets = np.asarray(stamps, np.int64), np.asarray(targets, np.int64)
    out = np.full(len(targets), -1, np.int64)
    if not len(stamps) or not len(targets):
        return out
    order = np.argsort(stamps, kind='stable')
    stamps = stamps[order]
    if tolerance is None:
        tolerance = np.median(np.diff(stamps)) / 2 if len(stamps) > 1 else 0
    right = np.clip(np.searchsorted(stamps, targets), 0, len(stamps) - 1)
    left = np.clip(right - 1, 0, len(stamps) - 1)
    pick = np.where(np.abs(stamps[left] - targets) <= np.abs(stamps[right] - targets),
                    left, right)
    ok = np.abs(stamps[pick] - targets) <= tolerance
    out[ok] = order[pick[ok]]
    return out


def file_identity(paths):
    """Return [[absolute path, size, mtime_ns]] of files: what a cache key must notice."""
    out = []
    for path in sorted(Path(p).resolve() for p in paths):
        stat = path.stat()
        out.append([str(path), stat.st_size, stat.st_mtime_ns])
    return out


def offline_params(topics, window):
    """Return PerceptionParams for one image-mode camera that drops nothing (OFFLINE)."""
    events_type = {EVENT_ARRAY: 'dvs', EVENT_PACKET: 'event_camera'}[topics.events_msgtype]
    overrides = {f'window.{k}': v for k, v in window_params(window).items() if k != 'anchor'}
    overrides.update(OFFLINE)
    overrides.update({'window.mode': 'image', 'cam0.events_topic': topics.events,
                      'cam0.events_type': events_type, 'cam0.image_topic': topics.image})
    return make_params(overrides)


class _GroundTruth:
    """Depth and label messages by header stamp, until the window of their frame is cut."""

    def __init__(self, topics):
        self.topics = {t: kind for t, kind in ((topics.depth, 'depth'),
                                               (topics.labels, 'labels')) if t}
        self.by_stamp = {t: OrderedDict() for t in self.topics}
        self.newest = dict.fromkeys(self.topics)  # newest stamp seen per topic

    def add(self, topic, data):
        image = decode_image(data)
        convert = depth_metres if self.topics[topic] == 'depth' else label_ids
        stamp = image.header.stamp_ns
        held = self.by_stamp[topic]
        held[stamp] = convert(image, topic)
        while len(held) > GT_KEEP:
            held.popitem(last=False)
        self.newest[topic] = max(stamp, self.newest[topic] or stamp)

    def ready(self, stamp, waited):
        """Whether every GT topic has shown this stamp's message or can no longer show it."""
        return waited or all(stamp in self.by_stamp[t] or (self.newest[t] or stamp) > stamp
                             for t in self.topics)

    def take(self, stamp):
        out = {'depth': None, 'labels': None}
        for topic, kind in self.topics.items():
            out[kind] = self.by_stamp[topic].pop(stamp, None)
        return out


def _sample(window, gt):
    return {'stamp_ns': window.header.stamp_ns, 't0': window.t0, 't1': window.t1,
            'events': window.events, 'sensor': tuple(window.sensor),
            'frame': image_to_rgb(window.image), **gt}


def iter_bag_windows(bag_path, events_topic=None, image_topic=None, depth_topic=None,
                     labels_topic=None, window=None, clock='ros'):
    """Yield the sample dicts (module docstring) of a bag's frames, in time order.

    `window` holds the pipeline's window.* values (duration_ms, events, max_lag_ms; default
    50 ms). Messages that do not decode are skipped and logged, as the pipeline does.
    """
    if window_params(window)['anchor'] != 'end':
        raise ValueError(f'{bag_path}: window.anchor centre is for data sets read whole (DSEC, '
                         'MVSEC); a bag is cut as the robot cuts it (anchor: end)')
    with BagReader(bag_path) as bag:
        topics = find_topics(bag, events_topic, image_topic, '', depth_topic, labels_topic)
        if not topics.image:
            raise ValueError(f'{bag_path}: no image topic; windows are cut at frames')
        params = offline_params(topics, window)
        skipped = {}  # topic or reason -> count

        def skip(what, reason, n=1):
            skipped[what] = skipped.get(what, 0) + n
            if skipped[what] == n:
                log.warning('%s: skipping %s: %s', bag.path, what, reason)

        def count(counter, key, n=1):
            if counter in ('dropped', 'resets'):  # frames lost to a time jump, and why
                skip(f'{counter}: {key}', counter, n)

        cutter = WindowCutter(params.cameras[0], params.values, clock, count)
        gt = _GroundTruth(topics)
        pending = deque()  # (window, receive_ns when cut)
        wanted = [t for t in (topics.events, topics.image, topics.depth, topics.labels) if t]
        for msg in bag.messages(wanted):
            if msg.error:
                skip(msg.topic, msg.error)
                continue
            try:
                if msg.topic == topics.events:
                    windows = cutter.events(msg.data, msg.time_ns, 0.0)
                elif msg.topic == topics.image:
                    windows = cutter.image(msg.data, msg.time_ns, 0.0)
                else:
                    windows = []
                    gt.add(msg.topic, msg.data)
            except WireError as exc:
                skip(msg.topic, exc)
                windows = cutter.release(msg.time_ns, 0.0)
            pending += [(w, msg.time_ns) for w in windows]
            while pending and gt.ready(pending[0][0].header.stamp_ns,
                                       msg.time_ns - pending[0][1] > GT_WAIT_NS):
                win = pending.popleft()[0]
                yield _sample(win, gt.take(win.header.stamp_ns))
        for win in [w for w, _ in pending] + cutter.flush():
            yield _sample(win, gt.take(win.header.stamp_ns))
        if skipped:
            log.warning('%s: skipped %s', bag.path, skipped)


class BagSource:
    """A bag as a cache source: its identity for the cache key, and its samples."""

    def __init__(self, path, events_topic=None, image_topic=None, depth_topic=None,
                 labels_topic=None, clock='ros'):
        self.path = Path(path)
        self.topics = {'events_topic': events_topic, 'image_topic': image_topic,
                       'depth_topic': depth_topic, 'labels_topic': labels_topic}
        self.clock = clock

    def identity(self):
        """Everything that decides the samples, without opening the bag."""
        if not self.path.exists():
            raise ValueError(f'{self.path}: no such bag')
        files = [self.path] if self.path.is_file() else [
            Path(root) / name for root, _, names in os.walk(self.path) for name in names]
        return {'kind': 'bag', 'files': file_identity(files), 'topics': self.topics,
                'clock': self.clock}

    def samples(self, window=None):
        return iter_bag_windows(self.path, window=window, clock=self.clock, **self.topics)

    def __iter__(self):
        return self.samples()
