"""The synthetic scene as one object: renderings at any time and an event recording of it.

`SyntheticScene(config, seed)` draws the street from the seed (the same seed, the same
scene, bit for bit); `render(t)` gives intensity, depth and labels at time t, `frame(t_ns)`
the 8-bit image a frame camera would record, and `simulate(seconds)` the events an event
camera would produce over [0, seconds] together with frames at a fixed rate.
"""

import math
from typing import NamedTuple

import numpy as np

from gep_ros.wire.events import concat_events

from .camera import EgoMotion, PinholeCamera
from .esim import EventSimulator, SensorConfig
from .layout import flatten, random_background, random_objects, SceneConfig
from .render import Renderer, View

NS = 1_000_000_000


class Frame(NamedTuple):
    """One frame: time, 8-bit image, depth and labels, all (H, W) (the image (H, W, 3) in rgb)."""

    t_ns: int
    image: np.ndarray  # uint8, mono or rgb
    depth: np.ndarray  # float32 metres, camera-frame z
    labels: np.ndarray  # uint8 DSEC_11 class ids


class SyntheticScene:
    """A procedural street scene drawn from `seed`, with exact depth and labels."""

    def __init__(self, config=None, seed=0):
        self.config = config = config or SceneConfig()
        self.seed = seed
        # Independent streams: the scene does not change with the sensor's settings.
        rng = np.random.default_rng([seed, 0])
        self.camera = PinholeCamera.from_fov(config.width, config.height, config.hfov_deg)
        self.ego = EgoMotion(config.camera_height_m, config.ego_speed,
                             math.radians(config.yaw_amplitude_deg), config.yaw_period_s,
                             rng.uniform(0, 2 * math.pi))
        self.background = random_background(config, rng)
        objects = list(config.objects) if config.objects is not None else \
            random_objects(config, rng)
        self.objects = objects if config.textured else flatten(objects)
        self.renderer = Renderer(config, self.camera, self.ego, self.background, self.objects,
                                 rng)

    def render(self, t_s):
        """Render the View (intensity, depth, labels) at time t_s in seconds."""
        return self.renderer.render(t_s)

    def frame(self, t_ns, rgb=False):
        """Render the Frame at t_ns: intensity as uint8 (mono, or class-tinted with rgb=True)."""
        view = self.render(t_ns / NS)
        pixels = self.renderer.rgb(view) if rgb else view.intensity
        image = (pixels * 255 + 0.5).astype(np.uint8)
        return Frame(int(t_ns), image, view.depth, view.labels)

    def frame_times(self, seconds, frame_rate=20.0):
        """Frame times in ns: k / frame_rate for k = 0 .. seconds * frame_rate - 1."""
        count = int(round(seconds * frame_rate))
        return [int(round(k * NS / frame_rate)) for k in range(count)]

    def simulate(self, seconds, frame_rate=20.0, sensor=None, rgb=False):
        """Events over [0, seconds] and the frames of that span.

        Returns (events, frames): events an (N,) EVENT_DTYPE array sorted by t (ns, whole
        microseconds, from 0), frames a list of Frame at `frame_times`.
        """
        chunks, frames = [], []
        for _, events, new_frames in self.stream(seconds, frame_rate, sensor, rgb):
            chunks.append(events)
            frames += new_frames
        # Each step's events lie in [its start, its end]: the concatenation is sorted.
        return concat_events(chunks), frames

    def events(self, seconds, sensor=None):
        """(N,) EVENT_DTYPE events of [0, seconds], sorted by t."""
        return self.simulate(seconds, 0, sensor)[0]

    def stream(self, seconds, frame_rate=20.0, sensor=None, rgb=False):
        """Simulate step by step: yield (t_ns, events, frames) in time order.

        `events` are the step's events ending at t_ns (EVENT_DTYPE sorted by t, times in
        [previous t_ns, t_ns]); `frames` the Frames with times up to t_ns not yielded before
        (the frame at 0 comes with the first step). Rendering steps are `sensor.step_us`
        long, the last one shorter where seconds is not a multiple. Nothing accumulates, so
        recordings of any length stream through in constant memory.
        """
        sensor = sensor or SensorConfig()
        end_ns = int(round(seconds * NS))
        step_ns = int(sensor.step_us) * 1000
        if step_ns <= 0:
            raise ValueError(f'step_us must be positive, got {sensor.step_us}')
        frame_times = self.frame_times(seconds, frame_rate) if frame_rate else []
        shape = (self.camera.height, self.camera.width)
        sim = EventSimulator(sensor, shape, np.random.default_rng([self.seed, 1]))
        # One View and one log image, reused every step.
        view, log_i = View.empty(*shape), np.empty(shape, np.float32)
        sim.reset(np.log(self.renderer.render(0.0, view).intensity, out=log_i), 0)
        next_frame = 0
        steps = list(range(step_ns, end_ns, step_ns)) + [end_ns] if end_ns > 0 else []
        for t_ns in steps:
            self.renderer.render(t_ns / NS, view)
            events = sim.step(np.log(view.intensity, out=log_i), t_ns)
            due = next_frame
            while next_frame < len(frame_times) and frame_times[next_frame] <= t_ns:
                next_frame += 1
            yield t_ns, events, [self.frame(t, rgb) for t in frame_times[due:next_frame]]
