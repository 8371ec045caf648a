"""Replay a recorded bag through the perception pipeline, without ROS, and evaluate it.

`replay(ReplayOptions(...))` reads the bag's event, image and camera-info topics in receive
order and feeds their raw bytes to the very `Pipeline` the node runs: as fast as it goes,
every window processed (`block_when_full`), or with `realtime` at the recorded pace with the
node's drop policy. Outputs go into a new ROS 2 bag, each written at its header stamp, with
the inputs copied beside them so the bag plays on its own in Foxglove. Where the bag has
ground truth (a 32FC1 / 16UC1 depth image topic, a mono8 label topic) each output is matched
to the ground truth of the same stamp, or the nearest within half a frame period, and depth
and segmentation metrics accumulate per pixel over the whole bag. The result is a
JSON-ready report; panels (events, frame, prediction, ground truth, error) of a few evenly
spaced windows go beside it as PNG files.
"""

from collections import deque
from dataclasses import dataclass
import json
from pathlib import Path
import sys
import time

import numpy as np

from .bag import BagReader, BagWriter
from .evaluation import decode_ground_truth, GroundTruthMatch
from .msgtypes import EVENT_ARRAY
from .panels import panel_windows, PanelTap, write_panels
from .params import file_parameters, load_params, ParamError
from .topics import find_topics as topics_by_type, TopicError
from .wire.cdr import CdrReader, WireError
from .wire.image import decode_image, IMAGE
from .wire.std import read_header

OPTION_NAMES = {'events': '--events-topic', 'image': '--image-topic',
                'camera_info': '--camera-info-topic', 'depth': '--depth-gt-topic',
                'labels': '--labels-gt-topic'}
NONE = 'none'  # a topic option set to this turns the topic off


class ReplayError(Exception):
    """A replay that cannot start (topics, parameters, backend); the message says why."""


@dataclass
class ReplayOptions:
    bag: Path
    weights: Path
    out_bag: Path
    report: Path = None  # default: report.json inside the output bag folder
    config: Path = None
    events_topic: str = None  # None: found by type; 'none' turns image / info / GT off
    image_topic: str = None
    camera_info_topic: str = None
    depth_gt_topic: str = None
    labels_gt_topic: str = None
    backend: str = None  # None: the config's (default auto)
    max_batch: int = None
    realtime: bool = False
    panels: int = 4
    copy_inputs: bool = True
    progress: bool = None  # None: when stderr is a terminal


def _config_topics(path):
    """Return cam0's topic parameters that the config file sets explicitly."""
    if path is None:
        return {}
    try:
        values = file_parameters(path)
    except ParamError:
        return {}  # load_params reports what is wrong with the file
    keys = ('events_topic', 'image_topic', 'camera_info_topic')
    return {k: values[f'cam0.{k}'] for k in keys if f'cam0.{k}' in values}


def find_topics(reader, options):
    """Resolve cam0's topics and the ground-truth topics: options, then config, then by type."""
    config = _config_topics(options.config)

    def choice(kind, key):
        value = getattr(options, f'{key}_topic')
        return value if value is not None else config.get(f'{key}_topic')
    try:
        return topics_by_type(
            reader, events=choice('events', 'events'), image=choice('image', 'image'),
            camera_info=choice('camera_info', 'camera_info'), depth=options.depth_gt_topic,
            labels=options.labels_gt_topic, options=OPTION_NAMES)
    except TopicError as exc:
        raise ReplayError(str(exc)) from None


def make_replay_params(options, topics):
    """Build the pipeline parameters: the config file, cam0's topics, the command line."""
    overrides = {'cam0.events_topic': topics.events,
                 'cam0.events_type': 'dvs' if topics.events_msgtype == EVENT_ARRAY
                 else 'event_camera',
                 'cam0.image_topic': topics.image, 'cam0.camera_info_topic': topics.camera_info}
    if options.backend is not None:
        overrides['backend'] = options.backend
    if options.max_batch is not None:
        overrides['max_batch'] = options.max_batch
    try:
        return load_params(options.config, overrides=overrides)
    except ParamError as exc:
        raise ReplayError(str(exc)) from None


# -- the run --------------------------------------------------------------------------------
def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


class _Outputs:
    """The publish callback: outputs wait here until the reading thread writes them."""

    def __init__(self):
        self.queue = deque()

    def __call__(self, topic, data):
        self.queue.append((topic, data))


class _Run:
    """One replay: the pipeline, the output bag, ground-truth matching and panel material."""

    def __init__(self, options, reader, topics, params, artifact, runtime):
        from .pipeline import Pipeline
        self.options, self.reader, self.topics = options, reader, topics
        self.params, self.artifact, self.runtime = params, artifact, runtime
        self.classes = artifact.meta['class_names']
        self.sink = _Outputs()
        self.pipeline = Pipeline(params, runtime, self.sink,
                                 block_when_full=not options.realtime)
        self.tap = PanelTap(self.pipeline.representation,
                            panel_windows(reader, topics, params.values, options.panels))
        self.pipeline.representation = self.tap  # keeps the chosen windows' events
        cam0 = self.pipeline.topics['cam0']
        self.evaluated = {cam0[name]: kind
                          for kind, name in (('depth', 'depth'), ('labels', 'segmentation'))
                          if name in cam0}
        self.gt_topics = {t: k for k, t in (('depth', topics.depth),
                                            ('labels', topics.labels)) if t}
        self.match = GroundTruthMatch(self.gt_topics.values(), self.classes,
                                      artifact.meta['depth_range'])
        self.outputs = self.pipeline.output_topics()
        self.inputs = [t for t, _ in self.pipeline.subscriptions()] + list(self.gt_topics)
        self.gt_rejected = {}
        self.grouped, self.panels, self.frames = {}, [], {}
        # Frames kept for the panels: more than can wait in the cutter and the queue.
        self.keep_frames = 4 * params['queue_size'] + 2 * params['max_batch'] + 16
        self.writer = None

    def run(self, writer):
        """Feed every message, write inputs and outputs; return the loop's wall seconds."""
        from tqdm import tqdm
        self.writer = writer
        for topic, msgtype in self.outputs.items():
            writer.add_topic(topic, msgtype)
        if self.options.copy_inputs:
            for topic in self.inputs:
                writer.add_topic(topic, self.reader.topics[topic].msgtype)
        progress = self.options.progress
        progress = sys.stderr.isatty() if progress is None else progress
        total = sum(self.reader.topics[t].count for t in self.inputs)
        first_ns, start = None, time.perf_counter()
        try:
            for msg in tqdm(self.reader.messages(self.inputs), total=total, unit='msg',
                            disable=not progress, desc='replay'):
                if self.options.realtime:
                    first_ns = msg.time_ns if first_ns is None else first_ns
                    wait = (msg.time_ns - first_ns) / 1e9 - (time.perf_counter() - start)
                    if wait > 0:
                        time.sleep(wait)
                accepted = self._feed(msg)
                if accepted and self.options.copy_inputs:
                    writer.write(msg.topic, msg.time_ns, msg.data)
                self._drain()
            self.pipeline.flush()
            self._drain(final=True)
        finally:
            self.pipeline.close()
        return time.perf_counter() - start

    def _feed(self, msg):
        """Give one message to the pipeline or the matcher; False if it was rejected."""
        kind = self.gt_topics.get(msg.topic)
        if kind is not None:
            try:
                self.match.add_gt(kind, *decode_ground_truth(kind, msg.data, len(self.classes)))
            except WireError as exc:
                reason = f'{msg.topic}: {exc.field}'
                self.gt_rejected[reason] = self.gt_rejected.get(reason, 0) + 1
                return False
            return True
        rejected = self.pipeline.stats.rejected
        before = sum(rejected.values())
        self.pipeline.feed(msg.topic, msg.data, msg.time_ns)
        if sum(rejected.values()) != before:
            return False
        if msg.topic == self.topics.image and self.options.panels:
            self.frames[read_header(CdrReader(msg.data, IMAGE)).stamp_ns] = msg.data
            while len(self.frames) > self.keep_frames:
                del self.frames[next(iter(self.frames))]
        return True

    def _drain(self, final=False):
        """Write the published outputs at their stamps; evaluate complete predictions."""
        while self.sink.queue:
            topic, data = self.sink.queue.popleft()
            stamp = read_header(CdrReader(data, self.outputs[topic])).stamp_ns
            self.writer.write(topic, stamp, data)
            kind = self.evaluated.get(topic)
            if kind is None:
                continue
            group = self.grouped.setdefault(stamp, {})
            group[kind] = np.array(decode_image(data).array)
            if len(group) == len(self.evaluated):
                self.match.add_prediction(stamp, self.grouped.pop(stamp))
        for stamp, prediction, truth in self.match.resolve(final):
            if stamp in self.tap.windows:
                self.panels.append((stamp, self.tap.windows.pop(stamp),
                                    self.frames.get(stamp), prediction, truth))

    def report(self, wall, setup):
        """Return counts, latency and metrics of the run, panels not yet written."""
        options, meta, snap = self.options, self.artifact.meta, self.pipeline.snapshot()
        snap['rejected'].update(self.gt_rejected)
        topics = self.topics
        return {
            'bag': str(options.bag), 'out_bag': str(options.out_bag),
            'topics': {'events': topics.events, 'image': topics.image,
                       'camera_info': topics.camera_info, 'depth_gt': topics.depth,
                       'labels_gt': topics.labels},
            'weights': {'path': str(options.weights), 'variant': meta['variant'],
                        'digest': self.artifact.digest,
                        'provenance': meta.get('provenance', {})},
            'backend': self.runtime.name, 'max_batch': self.params['max_batch'],
            'mode': 'realtime' if options.realtime else 'fast',
            'window_mode': self.pipeline.cameras['cam0'].mode,
            'windows': snap['windows'], 'outputs': snap['outputs'],
            'dropped': snap['dropped'], 'rejected': snap['rejected'],
            'resets': snap['resets'], 'inputs': snap['inputs'], 'events': snap['events'],
            'latency_ms': snap['latency_ms'],
            'inference_error': repr(self.pipeline.error) if self.pipeline.error else None,
            'metrics': self.match.metrics(),
            'setup_s': setup, 'wall_s': wall,
            'windows_per_s': snap['windows'] / wall if wall > 0 else None,
        }


def replay(options):
    """Run the replay described by `options`; return the report (JSON-ready dict)."""
    from gep_model.artifact import load_artifact
    from gep_model.runtime import cpu_threads, make_runtime
    started = time.perf_counter()
    if Path(options.out_bag).exists():
        raise ReplayError(f'{options.out_bag}: already exists; choose a new output path')
    with BagReader(options.bag) as reader:
        topics = find_topics(reader, options)
        params = make_replay_params(options, topics)
        missing = [c.events_topic for c in params.cameras if c.events_topic not in reader.topics]
        if missing:
            raise ReplayError(f'{options.bag}: no topic {missing[0]} in the bag '
                              f'(event topics: {", ".join(reader.event_topics()) or "none"})')
        artifact = load_artifact(options.weights)
        try:
            runtime = make_runtime(artifact, params['backend'], params['max_batch'],
                                   params['precision'], params['engine_cache'] or None,
                                   threads=cpu_threads(params['threads']))
        except (ValueError, RuntimeError) as exc:
            raise ReplayError(f'backend: {exc}') from None
        run = _Run(options, reader, topics, params, artifact, runtime)
        setup = time.perf_counter() - started
        with BagWriter(options.out_bag) as writer:
            wall = run.run(writer)
        report = run.report(wall, setup)
    path = Path(options.report) if options.report else Path(options.out_bag) / 'report.json'
    report['report'] = str(path)
    palette = np.asarray(artifact.meta['palette'], np.uint8)
    report['panels'] = write_panels(path, run.panels, palette, run.tap.first_end or 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    report = _jsonable(report)
    path.write_text(json.dumps(report, indent=2, allow_nan=False) + '\n')
    return report
