"""Procedural street scenes with exact depth and labels, and the events they would produce.

No ROS here, only numpy: `SyntheticScene(config, seed)` renders a street (ground plane,
far background, moving textured objects, a slowly panning and advancing camera) at any
time with exact z-depth and DSEC_11 class labels, and `simulate(seconds)` turns the
renderings into events (ESIM principle) plus frames. `training.synthetic.bag` writes the
result as a ROS 2 bag (`gep synth`).
"""

from .camera import EgoMotion, PinholeCamera
from .esim import EventSimulator, SensorConfig
from .layout import CLASS_IDS, SceneConfig, SceneObject
from .render import View
from .scene import Frame, SyntheticScene

__all__ = ['CLASS_IDS', 'EgoMotion', 'EventSimulator', 'Frame', 'PinholeCamera', 'SceneConfig',
           'SceneObject', 'SensorConfig', 'SyntheticScene', 'View']
