"""The synthetic camera: pinhole intrinsics and the slow ego-motion of the vehicle carrying it.

Coordinates follow the optical (OpenCV) convention: x right, y down, z forward, in metres.
The world frame shares the axes at t = 0: the ground is the plane Y = 0 and the camera rides
at height `height_m` above it (Y = -height_m). The vehicle drives straight along world Z
while the camera pans (yaws) slowly about the vertical axis, so the pitch is zero and the
horizon stays on the principal row.
"""

from dataclasses import dataclass
import math

import numpy as np


@dataclass(frozen=True)
class PinholeCamera:
    """Pinhole intrinsics without distortion; pixel centres sit at integer coordinates."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def from_fov(cls, width, height, hfov_deg=70.0):
        """Square pixels, principal point at the image centre, horizontal field of view."""
        f = (width / 2) / math.tan(math.radians(hfov_deg) / 2)
        return cls(width, height, f, f, (width - 1) / 2, (height - 1) / 2)

    @property
    def k(self):
        """(3, 3) float64 intrinsic matrix."""
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], np.float64)

    @property
    def p(self):
        """(3, 4) float64 projection matrix of the monocular camera: [K | 0]."""
        return np.hstack([self.k, np.zeros((3, 1))])

    def ray_x(self):
        """(W,) float64 x / z of the ray through each pixel column."""
        return (np.arange(self.width) - self.cx) / self.fx

    def ray_y(self):
        """(H,) float64 y / z of the ray through each pixel row."""
        return (np.arange(self.height) - self.cy) / self.fy

    def project(self, x, y, z):
        """Pixel coordinates (u, v) of camera-frame points; arrays or floats."""
        return self.cx + self.fx * np.divide(x, z), self.cy + self.fy * np.divide(y, z)


@dataclass(frozen=True)
class EgoMotion:
    """Straight forward drive at `speed` m/s with a sinusoidal pan of the camera.

    yaw(t) = amplitude * sin(2 pi t / period + phase), positive to the right (towards +X).
    """

    height_m: float = 1.5
    speed: float = 2.0
    yaw_amplitude_rad: float = 0.0
    yaw_period_s: float = 6.0
    yaw_phase: float = 0.0

    def yaw(self, t_s):
        if not self.yaw_amplitude_rad:
            return 0.0
        return self.yaw_amplitude_rad * math.sin(2 * math.pi * t_s / self.yaw_period_s
                                                 + self.yaw_phase)

    def position(self, t_s):
        """Return the camera centre in world coordinates (X, Y, Z) at time t_s."""
        return 0.0, -self.height_m, self.speed * t_s

    def world_to_camera(self, t_s, points):
        """Camera-frame coordinates of (N, 3) world points at time t_s, as (N, 3) float64."""
        points = np.asarray(points, np.float64).reshape(-1, 3)
        yaw = self.yaw(t_s)
        c, s = math.cos(yaw), math.sin(yaw)
        d = points - np.array(self.position(t_s))
        # The camera's right axis is (cos, 0, -sin) in the world, its forward axis (sin, 0, cos).
        return np.stack([c * d[:, 0] - s * d[:, 2], d[:, 1], s * d[:, 0] + c * d[:, 2]], 1)
