"""Perception parameters: one schema for the node (ROS parameters) and for replay (YAML).

The YAML file is a ROS 2 parameter file (`<node>: ros__parameters: ...`); nested keys are the
dotted parameter names the node declares (`window.duration_ms`). Every parameter has a
default and a description here, in one place: the node declares exactly these, and
`config/perception.yaml` documents them. Cameras are listed by name in `cameras`, each with
its own `<name>.*` parameters.
"""

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .msgtypes import EVENT_ARRAY, EVENT_PACKET

NODE_NAME = 'perception_node'

# name: (default, description). Per-camera parameters are under CAMERA_PARAMS.
PARAMS = {
    'weights': ('', 'artifact folder (model.safetensors + model.json); empty: a random '
                    'gep_tiny for smoke tests'),
    'backend': ('auto', 'runtime backend: auto, tensorrt, cuda, cpu or onnxruntime'),
    'precision': ('fp16', 'GPU precision: fp16, bf16 or fp32'),
    'engine_cache': ('', 'TensorRT / ONNX engine cache folder; empty: ~/.cache/gep_ros/engines'),
    'max_batch': (4, 'largest number of windows run together'),
    'max_wait_ms': (5.0, 'longest wait for a fuller batch once a window is ready'),
    'queue_size': (8, 'windows waiting for inference; beyond it the oldest is dropped'),
    'window.mode': ('auto', 'image: end a window at every frame; rate: at a fixed rate on the '
                            'event clock; auto: image where the camera has an image topic'),
    'window.duration_ms': (50.0, 'window length in milliseconds (when window.events is 0)'),
    'window.events': (0, 'if > 0, a window is the last N events before its end instead'),
    'window.rate_hz': (20.0, 'window rate in rate mode'),
    'window.max_lag_ms': (100.0, 'how long a frame waits for the events up to its stamp'),
    'buffer.max_events': (5_000_000, 'events kept per camera; beyond it the oldest are dropped'),
    'buffer.keep_ms': (1000.0, 'event history kept per camera'),
    'buffer.reorder_ms': (20.0, 'packets this much older than the newest are still accepted'),
    'buffer.jump_back_ms': (500.0, 'a larger backwards jump resets the camera (looping bag)'),
    'outputs.depth': (True, 'publish depth/image (32FC1, metres, NaN where invalid)'),
    'outputs.segmentation': (True, 'publish segmentation/labels (mono8 class ids)'),
    'outputs.color': (True, 'publish segmentation/color (rgb8 palette over the frame)'),
    'outputs.points': (False, 'publish depth/points (PointCloud2; needs camera_info)'),
    'outputs.points_stride': (4, 'pixel stride of the point cloud'),
    'qos.reliability': ('best_effort', 'subscription reliability: best_effort or reliable'),
    'qos.depth': (10, 'subscription and publisher queue depth'),
    'cameras': (['cam0'], 'camera names; each has the <name>.* parameters below'),
}
CAMERA_PARAMS = {
    'events_topic': ('/dvs/events', 'dvs_msgs/EventArray or event_camera_msgs/EventPacket'),
    'events_type': ('dvs', 'dvs (EventArray) or event_camera (EventPacket)'),
    'image_topic': ('', 'sensor_msgs/Image topic; empty: no frames (rate windows)'),
    'camera_info_topic': ('', 'sensor_msgs/CameraInfo topic; needed for depth/points'),
    'output_namespace': ('', 'namespace of the outputs; empty: that of the events topic'),
}
EVENT_TYPES = {'dvs': EVENT_ARRAY, 'event_camera': EVENT_PACKET}


class ParamError(ValueError):
    """A parameter value that cannot work; the message names the parameter."""


@dataclass
class CameraParams:
    name: str
    events_topic: str
    events_type: str
    image_topic: str = ''
    camera_info_topic: str = ''
    output_namespace: str = ''

    @property
    def events_msgtype(self):
        return EVENT_TYPES[self.events_type]

    @property
    def namespace(self):
        if self.output_namespace:
            return self.output_namespace.rstrip('/')
        return self.events_topic.rsplit('/', 1)[0] if '/' in self.events_topic else ''

    def output_topic(self, name):
        return f'{self.namespace}/{name}'


@dataclass
class PerceptionParams:
    values: dict = field(default_factory=dict)  # dotted name -> value, defaults filled in
    cameras: list = field(default_factory=list)  # [CameraParams]

    def __getitem__(self, name):
        return self.values[name]


def flatten(tree, prefix=''):
    """Turn nested dicts into dotted names: {'window': {'mode': x}} -> {'window.mode': x}."""
    out = {}
    for key, value in tree.items():
        name = f'{prefix}{key}'
        if isinstance(value, dict):
            out.update(flatten(value, name + '.'))
        else:
            out[name] = value
    return out


def camera_defaults(name):
    return {f'{name}.{k}': v for k, (v, _) in CAMERA_PARAMS.items()}


def make_params(overrides=None):
    """Fill defaults in, check types and values; `overrides` holds dotted names."""
    overrides = dict(overrides or {})
    values = {name: default for name, (default, _) in PARAMS.items()}
    cameras = overrides.get('cameras', values['cameras'])
    if isinstance(cameras, str):
        cameras = [c for c in cameras.replace(',', ' ').split() if c]
    if not cameras or not all(isinstance(c, str) and c for c in cameras):
        raise ParamError(f'cameras: expected a list of camera names, got {cameras!r}')
    for cam in cameras:
        values.update(camera_defaults(cam))
    unknown = sorted(set(overrides) - set(values))
    if unknown:
        raise ParamError(f'unknown parameter {unknown[0]} (cameras: {", ".join(cameras)})')
    for name, value in overrides.items():
        values[name] = _checked(name, value, values[name])
    values['cameras'] = list(cameras)
    _check_ranges(values)
    cams = [CameraParams(cam, **{k: values[f'{cam}.{k}'] for k in CAMERA_PARAMS})
            for cam in cameras]
    return PerceptionParams(values, cams)


def _checked(name, value, default):
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ParamError(f'{name}: expected true or false, got {value!r}')
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamError(f'{name}: expected an integer, got {value!r}')
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamError(f'{name}: expected a number, got {value!r}')
        value = float(value)
    elif isinstance(default, str) and not isinstance(value, str):
        raise ParamError(f'{name}: expected a string, got {value!r}')
    return value


def _check_ranges(v):
    choices = {'backend': ('auto', 'tensorrt', 'cuda', 'cpu', 'onnxruntime'),
               'precision': ('fp16', 'bf16', 'fp32'), 'window.mode': ('auto', 'image', 'rate'),
               'qos.reliability': ('best_effort', 'reliable')}
    for name, allowed in choices.items():
        if v[name] not in allowed:
            raise ParamError(f'{name}: {v[name]!r} is not one of {", ".join(allowed)}')
    for name in ('max_batch', 'queue_size', 'qos.depth', 'buffer.max_events',
                 'outputs.points_stride'):
        if v[name] < 1:
            raise ParamError(f'{name}: must be at least 1, got {v[name]}')
    for name in ('window.duration_ms', 'window.rate_hz', 'buffer.keep_ms'):
        if v[name] <= 0:
            raise ParamError(f'{name}: must be positive, got {v[name]}')
    for cam in v['cameras']:
        if v[f'{cam}.events_type'] not in EVENT_TYPES:
            raise ParamError(f'{cam}.events_type: {v[f"{cam}.events_type"]!r} is not dvs or '
                             'event_camera')
        if not v[f'{cam}.events_topic']:
            raise ParamError(f'{cam}.events_topic: empty')


def load_params(path=None, node=NODE_NAME, overrides=None):
    """Read a ROS 2 parameter YAML file (or nothing) plus dotted overrides."""
    values = {}
    if path is not None:
        path = Path(path)
        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ParamError(f'{path}: cannot read parameters ({exc})') from None
        section = doc.get(node) or doc.get('/**') or {}
        if not isinstance(section, dict) or 'ros__parameters' not in section:
            raise ParamError(f'{path}: no {node}: ros__parameters: section')
        values = flatten(section['ros__parameters'] or {})
    values.update(overrides or {})
    return make_params(values)
