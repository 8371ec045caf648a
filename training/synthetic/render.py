"""Render the street at any time t: intensity, z-depth and class labels, pixel for pixel exact.

Surfaces are drawn back to front with a depth test (z-buffer): the panorama, then the
ground plane where it is nearer, then the billboards far to near wherever nothing nearer
is drawn already. Each surface's depth is analytic (street.py, billboards.py), so the depth
image is exact. Depth is the camera-frame z (what depth cameras publish as 32FC1), not the
range along the ray; every pixel shows the panorama or something nearer, so every depth
is finite and positive.
"""

from dataclasses import dataclass

import numpy as np

from gep_model.classes import DSEC_11

from .billboards import draw_billboard
from .street import Street

I_MIN = 0.01  # darkest intensity: keeps log intensity finite


@dataclass
class View:
    """One rendering of the scene, three (H, W) images of the same pixels."""

    intensity: np.ndarray  # float32 in (0, 1]
    depth: np.ndarray  # float32 metres, camera-frame z
    labels: np.ndarray  # uint8 DSEC_11 class ids

    @classmethod
    def empty(cls, height, width):
        return cls(np.empty((height, width), np.float32), np.empty((height, width), np.float32),
                   np.empty((height, width), np.uint8))


def class_tints():
    """(11, 3) float32 colour per class, of unit luma, paler than the palette (for rgb8)."""
    pal = np.array([c for _, c in DSEC_11], np.float32) / 255
    tint = 0.55 + 0.45 * pal
    luma = tint @ np.array([0.299, 0.587, 0.114], np.float32)
    return tint / luma[:, None]


class Renderer:
    """Render a street (background, objects, ego-motion) through a pinhole camera."""

    def __init__(self, config, camera, ego, background, objects, rng):
        self.config, self.camera, self.ego = config, camera, ego
        self.objects = objects
        self.street = Street(config, camera, ego, background, rng)
        self._tints = class_tints()

    def render(self, t_s, out=None):
        """Render the scene at time t_s (seconds) into a new View, or into View `out`."""
        cam = self.camera
        view = out or View.empty(cam.height, cam.width)
        yaw = self.ego.yaw(t_s)
        panorama = self.street.panorama_columns(yaw)
        # Each surface is computed only where it can show: the ground hides the panorama
        # from row `full` down, and partly from row `part`.
        part, full = self.street.ground_rows(panorama[0])
        self.street.draw_panorama(panorama, full, view.intensity, view.depth, view.labels)
        if part < cam.height:
            self.street.draw_ground(t_s, yaw, part, full, view.intensity, view.depth,
                                    view.labels)
        poses = self.object_poses(t_s)
        # Painter's order, far to near; the depth test settles ties with the ground.
        for i in np.argsort(-poses[:, 2], kind='stable'):
            draw_billboard(self.objects[i], poses[i], cam, self.config.near_clip_m,
                           view.intensity, view.depth, view.labels)
        np.clip(view.intensity, I_MIN, 1.0, out=view.intensity)
        return view

    def rgb(self, view):
        """(H, W, 3) float32 colour of a View: its intensity tinted by each pixel's class."""
        return np.minimum(view.intensity[..., None] * self._tints[view.labels], 1.0)

    def object_poses(self, t_s):
        """Camera-frame bottom centres (N, 3) float64 of the objects at t_s, in object order."""
        if not self.objects:
            return np.empty((0, 3))
        cam_z = self.ego.position(t_s)[2]
        span = self.config.street_span_m
        world = [obj.world_position(t_s, cam_z, span) for obj in self.objects]
        return self.ego.world_to_camera(t_s, world)
