"""The whole perception loop without ROS: message bytes in, output message bytes out.

`Pipeline.feed(topic, cdr_bytes, receive_time_ns)` takes every subscribed message, as the
node's raw subscriptions and bag replay deliver them. Per camera a `WindowCutter`
(gep_ros.windows, shared with training) decodes events into a bounded buffer and cuts
windows: ending at each frame's stamp (image mode) or at a fixed rate on the event clock
(rate mode). Windows go through a bounded queue to one worker
thread, which batches them (one window per camera, up to `max_batch` cameras, waiting at
most `max_wait_ms` for the other cameras), renders
their event representation (and, on a second thread meanwhile, fits their frames when the
model takes frames), runs the model runtime and publishes depth, labels, a colour
overlay and optionally a point cloud through `publish(topic, cdr_bytes)`, each output
carrying the header of the input it answers.

`feed` never waits for the model: a full queue drops its oldest window (counted), unless
`block_when_full` is set (replay, which wants every window). Bad messages are rejected and
counted by reason; a camera whose time jumps backwards (a looping bag, a restarted driver)
is reset, temporal state included, and nothing stamped before the jump is published after
it.
"""

from collections import deque
from concurrent.futures import ThreadPoolExecutor
import logging
import threading
import time

import torch

from gep_model.artifact import representation_of
from gep_model.events import fit_to_input

from .outputs import colour_table, encode_outputs, OUTPUTS, resize_depth, resize_labels
from .params import resolve_name
from .stats import PipelineStats
from .windows import WindowCutter
from .wire.cdr import WireError
from .wire.image import CAMERA_INFO, decode_camera_info, ENCODINGS, IMAGE, image_to_gray, \
    image_to_rgb

log = logging.getLogger('gep_ros.pipeline')


class Pipeline:
    """See the module docstring. `runtime` is a gep_model runtime built from an artifact."""

    def __init__(self, params, runtime, publish, block_when_full=False, clock='ros',
                 resolve=resolve_name):
        self.params = params
        self.values = params.values
        self.runtime = runtime
        self.publish = publish
        self.block_when_full = block_when_full
        self.stats = PipelineStats()
        meta = runtime.artifact.meta
        self.representation = representation_of(meta)
        self.input_size = tuple(runtime.model.config.input_size)
        # An event-only model (GEP's downstream default) has no frame encoder: frames then
        # only set the outputs' size and colour the overlay, and are not prepared as input.
        self.frames_in = getattr(runtime.model, 'image_encoder', None) is not None
        # What a window without a frame (or a model without a frame encoder) is given:
        # stacked (copied) into each batch, never written.
        self.no_frame = torch.zeros(3, *self.input_size)
        self.palette = colour_table(meta['palette'])
        self.enabled = {name for name in OUTPUTS if self.values[f'outputs.{name}']}
        self.cameras = {c.name: WindowCutter(c, self.values, clock, self.stats.count,
                                             self.stats.time) for c in params.cameras}
        self.camera_info = {}  # camera -> its latest CameraInfo
        self.routes = {}  # resolved input topic -> (camera, kind)
        self.topics = {}  # camera -> {output name: resolved topic}
        named = {}  # resolved topic -> what it is, to refuse a topic used twice
        for cam in params.cameras:
            for kind, topic in (('events', cam.events_topic), ('image', cam.image_topic),
                                ('camera_info', cam.camera_info_topic)):
                if topic:
                    self.routes[_claim(named, resolve(topic), f'{cam.name}.{kind}_topic')] = \
                        (cam.name, kind)
            self.topics[cam.name] = {
                name: _claim(named, resolve(cam.output_topic(OUTPUTS[name][0])),
                             f'camera {cam.name} output {name}')
                for name in sorted(self.enabled)}
        self.lock = threading.Lock()
        self.queue = deque()
        self.ready = threading.Condition()
        self.busy = False
        self.closed = False
        self.stopping = False  # set by close(drop=True): publish nothing more
        self.error = None
        # Frames are converted and fitted on a thread of their own while the worker renders
        # the events: both are torch and numpy work that lets go of the GIL, and the core
        # the model leaves to decoding is mostly idle.
        self.frame_pool = ThreadPoolExecutor(1, thread_name_prefix='gep-frames')
        self.worker = threading.Thread(target=self._work, name='gep-inference', daemon=True)
        self.worker.start()

    # -- topics -------------------------------------------------------------------------
    def subscriptions(self):
        """Return [(topic, msgtype)] the pipeline consumes."""
        types = {'image': IMAGE, 'camera_info': CAMERA_INFO}
        return [(topic, self.cameras[cam].camera.events_msgtype if kind == 'events'
                 else types[kind]) for topic, (cam, kind) in self.routes.items()]

    def output_topics(self):
        """Return {topic: msgtype} of everything the pipeline may publish."""
        return {topic: OUTPUTS[name][1] for topics in self.topics.values()
                for name, topic in topics.items()}

    # -- input --------------------------------------------------------------------------
    def feed(self, topic, data, receive_time_ns):
        """Take one serialized message; never raises on bad input (it is counted)."""
        fed = time.perf_counter()
        route = self.routes.get(topic)
        if route is None:
            self.stats.count('rejected', f'{topic}: not subscribed')
            return
        self.stats.message(topic, len(data), receive_time_ns)
        cutter = self.cameras[route[0]]
        jobs = []
        with self.lock:
            try:
                if route[1] == 'events':
                    jobs = cutter.events(data, receive_time_ns, fed)
                elif route[1] == 'image':
                    jobs = cutter.image(data, receive_time_ns, fed)
                else:
                    self.camera_info[cutter.name] = decode_camera_info(data)
            except WireError as exc:
                self.stats.count('rejected', f'{topic}: {exc.field}')
                log.warning('rejected a message on %s: %s', topic, exc)
                jobs = cutter.release(receive_time_ns, fed)
        for job in jobs:
            self._enqueue(job)

    def _enqueue(self, job):
        job.queued = time.perf_counter()
        with self.ready:
            if self.block_when_full:
                while len(self.queue) >= self.values['queue_size'] and not self.closed:
                    self.ready.wait(0.1)
            elif len(self.queue) >= self.values['queue_size']:
                self.queue.popleft()
                self.stats.count('dropped', 'inference queue full')
            self.queue.append(job)
            self.ready.notify_all()

    # -- inference ----------------------------------------------------------------------
    def _take(self):
        with self.ready:
            while not self.queue and not self.closed:
                self.ready.wait(0.1)
            if not self.queue:
                return []
            # A batch holds one window per camera, the oldest: a camera's windows run one
            # after another anyway (its temporal state), so a second one in the batch would
            # only hold back the first one's outputs. With one camera nothing waits.
            limit = min(self.values['max_batch'], len(self.cameras))
            deadline = time.perf_counter() + self.values['max_wait_ms'] / 1e3
            while len({job.camera for job in self.queue}) < limit and not self.closed:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                self.ready.wait(left)
            jobs, cameras = [], set()
            for job in self.queue:
                if job.camera not in cameras and len(jobs) < limit:
                    cameras.add(job.camera)
                    jobs.append(job)
            for job in jobs:
                self.queue.remove(job)
            self.busy = True
            self.ready.notify_all()
            return jobs

    def _work(self):
        epochs = {}
        while True:
            jobs = self._take()
            if not jobs:
                return
            try:
                current = []
                for job in jobs:
                    if self.cameras[job.camera].epoch != job.epoch:
                        self.stats.count('dropped', 'window from before a time jump')
                        continue
                    if epochs.get(job.camera) != job.epoch:
                        self.runtime.reset(job.camera)
                        epochs[job.camera] = job.epoch
                    current.append(job)
                if current:
                    self._infer(current)
            except Exception as exc:  # noqa: B902 - the worker must survive and report
                self.stats.count('dropped', f'inference failed: {type(exc).__name__}')
                log.error('inference failed on %d window(s): %s', len(jobs), exc)
                self.error = exc
            finally:
                with self.ready:
                    self.busy = False
                    self.ready.notify_all()

    def _infer(self, jobs):
        t = time.perf_counter()
        reps = []
        frames = [self.frame_pool.submit(frame_input, job.image, self.input_size)
                  if job.image is not None and self.frames_in else None for job in jobs]
        for job in jobs:
            self.stats.time('queued', (t - job.queued) * 1e3)
            reps.append(self.representation.render_fitted(job.events, job.t0, job.t1,
                                                          *job.sensor, self.input_size))
        has_image = [frame is not None for frame in frames]
        frames = [self.no_frame if frame is None else frame.result() for frame in frames]
        t_rep = time.perf_counter()
        outs = self.runtime.infer(_batch(reps), _batch(frames), torch.tensor(has_image),
                                  streams=[j.camera for j in jobs])
        t_inf = time.perf_counter()
        self.stats.time('representation', (t_rep - t) * 1e3 / len(jobs))
        self.stats.time('inference', (t_inf - t_rep) * 1e3)
        for job, out in zip(jobs, outs):
            t_enc = time.perf_counter()
            cam = self.cameras[job.camera]
            size = job.image.array.shape[:2] if job.image is not None else job.sensor
            depth = resize_depth(out.depth, size) if out.depth is not None else None
            labels = resize_labels(out.labels, size) if out.labels is not None else None
            frame = image_to_rgb(job.image) if job.image is not None else None
            messages = encode_outputs(self.enabled, self.topics[job.camera], job.header, depth,
                                      labels, self.palette, frame,
                                      self.camera_info.get(job.camera),
                                      self.values['outputs.points_stride'])
            self.stats.time('encode', (time.perf_counter() - t_enc) * 1e3)
            if cam.epoch != job.epoch:
                self.stats.count('dropped', 'window from before a time jump')
                continue
            if self.stopping:
                self.stats.count('dropped', 'shutdown')
                continue
            for topic, data in messages:
                self.publish(topic, data)
                self.stats.count('outputs', topic)
            self.stats.time('end_to_end', (time.perf_counter() - job.fed) * 1e3)

    # -- end ----------------------------------------------------------------------------
    def flush(self, timeout=None):
        """Cut every waiting frame's window and wait until all windows are published."""
        jobs = []
        with self.lock:
            for cutter in self.cameras.values():
                jobs += cutter.flush()
        for job in jobs:
            self._enqueue(job)
        deadline = None if timeout is None else time.perf_counter() + timeout
        with self.ready:
            while self.queue or self.busy:
                left = None if deadline is None else deadline - time.perf_counter()
                if left is not None and left <= 0:
                    return False
                self.ready.wait(0.1 if left is None else min(left, 0.1))
        return True

    def close(self, drop=False):
        """Stop the worker once it has finished the queue.

        With `drop` (a node shutting down) it drops every waiting window instead, and
        publishes nothing more; the windows are counted as dropped.
        """
        with self.ready:
            if drop:
                self.stopping = True
                if self.queue:
                    self.stats.count('dropped', 'shutdown', len(self.queue))
                    self.queue.clear()
            self.closed = True
            self.ready.notify_all()
        self.worker.join(timeout=5)
        self.frame_pool.shutdown(wait=False)

    def snapshot(self):
        """Statistics as a JSON-ready dict (see PipelineStats), with drops of the buffers."""
        snap = self.stats.snapshot()
        for name, camera in self.cameras.items():
            for reason, n in camera.buffer.dropped.items():
                snap['dropped'][f'{name} events {reason}'] = n
        snap['queue'] = len(self.queue)
        return snap


def _batch(tensors):
    """Stack (C, H, W) tensors into (B, C, H, W); one is a view of itself, not a copy."""
    return tensors[0][None] if len(tensors) == 1 else torch.stack(tensors)


def frame_input(image, size):
    """Return a decoded frame as the model's (3, H, W) float32 input in [0, 1] at `size`.

    The frame as RGB, scaled to [0, 1] and fitted as fit_to_input does. A grey frame (mono8,
    mono16) is fitted as one channel and repeated: the same values as fitting its three
    equal channels, for a third of the work.
    """
    if ENCODINGS[image.encoding][2] == 'gray':
        grey = torch.from_numpy(image_to_gray(image))[None].float() / 255
        return fit_to_input(grey, size).expand(3, -1, -1)
    rgb = torch.from_numpy(image_to_rgb(image)).permute(2, 0, 1).float() / 255
    return fit_to_input(rgb, size)


def _claim(named, topic, what):
    """Note that `what` uses `topic`; refuse a topic that two things would use."""
    if topic in named:
        raise ValueError(f'{what} and {named[topic]} are both {topic}: give each camera its own '
                         'topics (output_namespace separates outputs)')
    named[topic] = what
    return topic
