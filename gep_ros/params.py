"""Perception parameters: one schema for the node (ROS parameters) and for replay (YAML).

The YAML file is a ROS 2 parameter file (`<node>: ros__parameters: ...`); nested keys are the
dotted parameter names the node declares (`window.duration_ms`). Every parameter has a
default and a description here, in one place: the node declares exactly these, and
`config/perception.yaml` documents them. Cameras are listed by name in `cameras`, each with
its own `<name>.*` parameters.
"""

from dataclasses import dataclass, field
import difflib
from pathlib import Path
import re
from typing import NamedTuple

import yaml

from .msgtypes import EVENT_ARRAY, EVENT_PACKET

NODE_NAME = 'perception_node'
BACKENDS = ('auto', 'tensorrt', 'cuda', 'cpu', 'onnxruntime')  # as gep_model.runtime


class Param(NamedTuple):
    """One parameter: its default (which fixes its type), what it does, its allowed values."""

    default: object
    description: str
    choices: tuple = ()  # allowed strings, where the value is one of a few
    low: float = None  # allowed numeric range, inclusive; the node's descriptors carry it
    high: float = None


# Per-camera parameters are under CAMERA_PARAMS.
PARAMS = {
    'weights': Param('', 'artifact folder (model.safetensors + model.json); empty: a random '
                         'gep_tiny for smoke tests'),
    'backend': Param('auto', 'runtime backend', BACKENDS),
    'precision': Param('fp16', 'GPU precision', ('fp16', 'bf16', 'fp32')),
    'engine_cache': Param('', 'TensorRT / ONNX engine cache folder; empty: '
                              '~/.cache/gep_ros/engines'),
    'max_batch': Param(4, 'largest number of windows run together, one per camera (a '
                          "camera's windows run in order)", low=1, high=64),
    'max_wait_ms': Param(5.0, "longest wait for the other cameras' windows once one is "
                              'ready (one camera: none)', low=0.0, high=1000.0),
    'threads': Param(0, 'CPU threads for the model (torch and onnxruntime); 0: all cores but '
                        'one, which decodes messages and runs ROS', low=0, high=1024),
    'queue_size': Param(8, 'windows waiting for inference; beyond it the oldest is dropped',
                        low=1, high=1 << 30),
    'window.mode': Param('auto', 'image: end a window at every frame; rate: at a fixed rate on '
                                 'the event clock; auto: image where the camera has an image '
                                 'topic', ('auto', 'image', 'rate')),
    'window.duration_ms': Param(50.0, 'window length in milliseconds (when window.events is 0)',
                                low=0.1, high=10_000.0),
    'window.events': Param(0, 'if > 0, a window is the last N events before its end instead',
                           low=0, high=100_000_000),
    'window.rate_hz': Param(20.0, 'window rate in rate mode', low=0.1, high=1000.0),
    'window.max_lag_ms': Param(100.0, 'how long a frame waits for the events up to its stamp',
                               low=0.0, high=10_000.0),
    'buffer.max_events': Param(5_000_000, 'events kept per camera; beyond it the oldest are '
                                          'dropped', low=1, high=1 << 40),
    'buffer.keep_ms': Param(1000.0, 'event history kept per camera', low=1.0, high=60_000.0),
    'buffer.reorder_ms': Param(20.0, 'packets this much older than the newest are still '
                                     'accepted', low=0.0, high=10_000.0),
    'buffer.jump_back_ms': Param(500.0, 'a larger backwards jump resets the camera (looping '
                                        'bag)', low=0.0, high=3_600_000.0),
    'outputs.depth': Param(True, 'publish depth/image (32FC1, metres, NaN where invalid)'),
    'outputs.segmentation': Param(True, 'publish segmentation/labels (mono8 class ids)'),
    'outputs.color': Param(True, 'publish segmentation/color (rgb8 palette over the frame)'),
    'outputs.points': Param(False, 'publish depth/points (PointCloud2; needs camera_info)'),
    'outputs.points_stride': Param(4, 'pixel stride of the point cloud', low=1, high=64),
    'cameras': Param(['cam0'], 'camera names; each has the <name>.* parameters below'),
}
# Topic names may be relative: they resolve in the node's namespace (and follow remapping),
# so `namespace:=robot1` moves inputs and outputs together, the ROS way.
CAMERA_PARAMS = {
    'events_topic': Param('dvs/events', 'dvs_msgs/EventArray or event_camera_msgs/EventPacket '
                                        'topic'),
    'events_type': Param('dvs', 'dvs (EventArray) or event_camera (EventPacket)',
                         ('dvs', 'event_camera')),
    'image_topic': Param('', 'sensor_msgs/Image topic; empty: no frames (rate windows)'),
    'camera_info_topic': Param('', 'sensor_msgs/CameraInfo topic; needed for depth/points'),
    'output_namespace': Param('', 'namespace of the outputs; empty: that of the events topic'),
}
EVENT_TYPES = {'dvs': EVENT_ARRAY, 'event_camera': EVENT_PACKET}


def describe(param):
    """Return the description with the allowed values, as the node and the file give it."""
    if param.choices:
        return f'{param.description} (one of {", ".join(param.choices)})'
    if param.low is not None:
        return f'{param.description} ({param.low} to {param.high})'
    return param.description


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
        """The outputs' namespace, as configured (relative names stay relative)."""
        if self.output_namespace:
            return self.output_namespace.rstrip('/') or '/'
        head = self.events_topic.rsplit('/', 1)[0] if '/' in self.events_topic else ''
        return head or ('/' if self.events_topic.startswith('/') else '')  # /events: root

    def output_topic(self, name):
        """Return the output topic `name` (depth/image, ...) in the output namespace."""
        if self.namespace in ('', '/'):
            return f'/{name}' if self.namespace else name
        return f'{self.namespace}/{name}'


@dataclass
class PerceptionParams:
    values: dict = field(default_factory=dict)  # dotted name -> value, defaults filled in
    cameras: list = field(default_factory=list)  # [CameraParams]

    def __getitem__(self, name):
        return self.values[name]


def resolve_name(name, namespace='/', node=NODE_NAME):
    """Expand a topic name as ROS does, without remapping (for replay, which has no node).

    Relative names go into the namespace, `~` into the node's own; absolute names stay.
    """
    namespace = '/' + namespace.strip('/') if namespace.strip('/') else ''
    if name.startswith('/'):
        full = name
    elif name.startswith('~'):
        full = f'{namespace}/{node}{name[1:]}'
    else:
        full = f'{namespace}/{name}'
    return full.rstrip('/') or '/'


def node_key_matches(key, fqn):
    """Tell whether a parameter file's top-level key applies to the node named `fqn`.

    The rules of rcl: a key without a leading slash is absolute all the same; `*` stands for
    one name token and `**` for any number of them (`/**` applies to every node).
    """
    pattern = ''
    for part in key.strip('/').split('/'):
        pattern += {'**': '(?:/[^/]+)*', '*': '/[^/]+'}.get(part, '/' + re.escape(part))
    return re.fullmatch(pattern, fqn) is not None


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


def schema(cameras):
    """Return {dotted name: Param} for the node's parameters with these cameras."""
    out = dict(PARAMS)
    for cam in cameras:
        out.update({f'{cam}.{k}': p._replace(description=f'camera {cam}: {p.description}')
                    for k, p in CAMERA_PARAMS.items()})
    return out


def make_params(overrides=None):
    """Fill defaults in, check types and values; `overrides` holds dotted names."""
    overrides = dict(overrides or {})
    cameras = overrides.get('cameras', PARAMS['cameras'].default)
    if isinstance(cameras, str):
        cameras = [c for c in cameras.replace(',', ' ').split() if c]
    if not cameras or not all(isinstance(c, str) and c for c in cameras):
        raise ParamError(f'cameras: expected a list of camera names, got {cameras!r}')
    params = schema(cameras)
    unknown = sorted(set(overrides) - set(params))
    if unknown:
        raise ParamError(f'unknown parameter {unknown[0]}{did_you_mean(unknown[0], params)} '
                         f'(cameras: {", ".join(cameras)})')
    values = {name: p.default for name, p in params.items()}
    for name, value in overrides.items():
        values[name] = _checked(name, value, params[name])
    values['cameras'] = list(cameras)
    for cam in cameras:
        if not values[f'{cam}.events_topic']:
            raise ParamError(f'{cam}.events_topic: empty')
    cams = [CameraParams(cam, **{k: values[f'{cam}.{k}'] for k in CAMERA_PARAMS})
            for cam in cameras]
    return PerceptionParams(values, cams)


def did_you_mean(name, known):
    close = difflib.get_close_matches(name, list(known), n=1)
    return f' (did you mean {close[0]}?)' if close else ''


def _checked(name, value, param):
    default = param.default
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
    if param.choices and value not in param.choices:
        raise ParamError(f'{name}: {value!r} is not one of {", ".join(param.choices)}')
    if param.low is not None and not param.low <= value <= param.high:
        raise ParamError(f'{name}: {value} is outside [{param.low}, {param.high}]')
    return value


def file_parameters(path, fqn='/' + NODE_NAME):
    """Return {dotted name: value} that a ROS 2 parameter file sets for the node `fqn`.

    Every section whose key applies to the node (node_key_matches) counts, later ones
    overriding earlier ones, as in rcl.
    """
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ParamError(f'{path}: cannot read parameters ({exc})') from None
    if not isinstance(doc, dict):
        raise ParamError(f'{path}: not a ROS 2 parameter file')
    values, found = {}, False
    for key, section in doc.items():
        if isinstance(key, str) and node_key_matches(key, fqn):
            if not isinstance(section, dict) or 'ros__parameters' not in section:
                raise ParamError(f'{path}: section {key} has no ros__parameters')
            values.update(flatten(section['ros__parameters'] or {}))
            found = True
    if not found:
        raise ParamError(f'{path}: no section for {fqn} (keys: {", ".join(map(str, doc))})')
    values.pop('use_sim_time', None)  # a node parameter of rclpy's, not ours
    return values


def load_params(path=None, overrides=None):
    """Read a ROS 2 parameter YAML file (or nothing) plus dotted overrides."""
    values = file_parameters(path) if path is not None else {}
    values.update(overrides or {})
    return make_params(values)
