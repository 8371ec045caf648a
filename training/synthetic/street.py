"""The street's fixed surfaces: the ground plane and the far panorama, with analytic depth.

The panorama is a cylinder of building and vegetation bands around the camera: a column
whose ray makes angle a with the optical axis sees the band of its world azimuth at
horizontal range R, so its z-depth is R cos(a) on every row. (The cylinder moves with the
camera: at 40-80 m, the few metres the vehicle advances would change its image by a few
per cent; yaw does turn it.) The ground is the plane Y = 0 seen from height h with zero
pitch, so row v shows z = fy h / (v - cy), the same along the row. Textures are looked up
in world units (metres on the road, metres along and up the wall), so they move exactly
as the geometry does.

Per rendering step these fill most of the image, so they work in place in reused
buffers: fresh image-sized temporaries would cost more in page faults than in arithmetic.
"""

import math

import numpy as np

from .layout import CLASS_IDS
from .textures import blend, smooth_noise, stripes

GROUND_SIZE, GROUND_TEXEL_M = 256, 0.05  # asphalt and paving tile 12.8 m
WALL_SIZE, WALL_TEXEL_M = 256, 0.125  # facade and foliage tile 32 m
ROAD, SIDEWALK, MARKING = 0.3, 0.55, 0.85  # mean reflectances
# The smallest ground feature (noise blobs, dash ends) is about this long; rows whose pixel
# footprint along the road exceeds it fade towards the mean, as a lens would blur them.
GROUND_FEATURE_M = 0.4
GROUND_IDS = np.array([CLASS_IDS['sidewalk'], CLASS_IDS['road']], np.uint8)  # by `on road`


def street_textures(rng):
    """Return (2, n, n) ground textures (asphalt, paving) and wall textures (facade, foliage)."""
    asphalt = smooth_noise(rng, GROUND_SIZE, 32, octaves=3)
    paving = blend((0.6, stripes(GROUND_SIZE, 16)), (0.4, stripes(GROUND_SIZE, 16, True)),
                   (0.5, smooth_noise(rng, GROUND_SIZE, 32)))
    windows = 1 - stripes(WALL_SIZE, 12, True, 0.45) * stripes(WALL_SIZE, 10, False, 0.5)
    facade = blend((0.8, windows), (0.3, smooth_noise(rng, WALL_SIZE, 16)))
    foliage = smooth_noise(rng, WALL_SIZE, 32, octaves=3)
    return np.stack([asphalt, paving]), np.stack([facade, foliage])


class Street:
    """Draw the panorama and the ground for one camera, ego-motion and background."""

    def __init__(self, config, camera, ego, background, rng):
        self.config, self.camera, self.ego, self.background = config, camera, ego, background
        ground, wall = street_textures(rng)
        self._ground_tex, self._wall_tex = ground.reshape(-1), wall.reshape(-1)
        rx, ry = camera.ray_x(), camera.ray_y()
        self._ray_x = rx.astype(np.float32)
        self._ray_y = ry.astype(np.float32)
        self._col_angle = np.arctan(rx)  # (W,) float64
        self._col_cos = np.cos(self._col_angle).astype(np.float32)
        # The ground is seen on the rows below the horizon only.
        rows = np.flatnonzero(ry > 0)
        self.ground_row0 = int(rows[0]) if len(rows) and config.ground else camera.height
        z = (ego.height_m / ry[self.ground_row0:]).astype(np.float32)
        self._ground_z = z[:, None]  # (Hg, 1)
        self._neg_ground_z = -z  # increasing, for searchsorted
        footprint = z.astype(np.float64) ** 2 / (camera.fy * ego.height_m)
        self._ground_fade = np.minimum(1.0, GROUND_FEATURE_M / footprint).astype(np.float32)
        self._buffers = {}

    def _buf(self, name, dtype=np.float32, ground=True):
        """Return a work array kept between calls: (Hg, W) for the ground, (H, W) for the wall."""
        rows = self.camera.height - self.ground_row0 if ground else self.camera.height
        buf = self._buffers.get(name)
        if buf is None:
            buf = self._buffers[name] = np.empty((rows, self.camera.width), dtype)
        return buf

    def panorama_columns(self, yaw):
        """Per column (W,): panorama depth (float32), band index and world azimuth."""
        bg = self.background
        azimuth = (yaw + self._col_angle + math.pi) % (2 * math.pi) - math.pi
        band = np.clip(np.searchsorted(bg.edges, azimuth, 'right') - 1, 0, len(bg.ranges) - 1)
        return (bg.ranges[band] * self._col_cos).astype(np.float32), band, azimuth

    def ground_rows(self, z_col):
        """(part, full): the ground hides the panorama from row full down, partly from part."""
        if self.ground_row0 >= self.camera.height:
            return self.ground_row0, self.ground_row0
        row0, neg_z = self.ground_row0, self._neg_ground_z
        return (row0 + int(np.searchsorted(neg_z, -z_col.max(), 'right')),
                row0 + int(np.searchsorted(neg_z, -z_col.min(), 'right')))

    def draw_panorama(self, panorama, rows, intensity, depth, labels):
        """Fill rows [0, rows) of the (H, W) images with the panorama."""
        bg = self.background
        z_col, band, azimuth = panorama
        depth[:rows] = z_col
        labels[:rows] = bg.class_ids[band]
        bright = bg.brightness[band]
        if not self.config.textured:
            intensity[:rows] = bright
            return
        # Texture coordinates on the wall: metres along it and metres above the ground.
        along = azimuth * bg.ranges[band] + bg.offsets[band]
        ix = (along / WALL_TEXEL_M).astype(np.int64) & (WALL_SIZE - 1)
        col_index = (bg.kinds[band] * WALL_SIZE * WALL_SIZE + ix).astype(np.int32)
        up = np.multiply(self._ray_y[:rows, None], -z_col[None, :],
                         out=self._buf('up', ground=False)[:rows])
        up += np.float32(self.ego.height_m)
        up *= np.float32(1 / WALL_TEXEL_M)
        idx = self._buf('wall_idx', np.int32, ground=False)[:rows]
        np.copyto(idx, up, casting='unsafe')
        idx &= WALL_SIZE - 1
        idx *= WALL_SIZE
        idx += col_index
        out = intensity[:rows]
        self._wall_tex.take(idx, out=out, mode='clip')  # 'clip': no buffered bounds check
        # reflectance = brightness * (1 + 0.6 * (2 tex - 1))
        out *= np.float32(1.2)
        out += np.float32(0.4)
        out *= bright

    def draw_ground(self, t_s, yaw, part, full, intensity, depth, labels):
        """Draw the ground on rows [part, H); on [part, full) only where it is nearer."""
        cfg, f32 = self.config, np.float32
        g = part - self.ground_row0  # first ground row drawn, in ground-row indices
        buf = self._buf
        z = self._ground_z[g:]
        cam_x, _, cam_z = self.ego.position(t_s)
        c, s = f32(math.cos(yaw)), f32(math.sin(yaw))
        x_cam = np.multiply(self._ray_x[None, :], z, out=buf('x_cam')[g:])
        x_world = np.multiply(x_cam, c, out=buf('x_world')[g:])
        x_world += z * s + f32(cam_x)
        dist = np.abs(x_world, out=buf('dist')[g:])
        road = np.less_equal(dist, f32(cfg.road_half_width_m), out=buf('road', bool)[g:])
        mean = np.multiply(road, f32(ROAD - SIDEWALK), out=buf('mean')[g:])
        mean += f32(SIDEWALK)
        value = mean
        if cfg.textured:
            z_world = x_cam  # x_cam is not needed any more
            z_world *= -s
            z_world += z * c + f32(cam_z)
            n, tmp = GROUND_SIZE, buf('tmp')[g:]
            idx, idx2 = buf('idx', np.int32)[g:], buf('idx2', np.int32)[g:]
            flag, flag2 = buf('flag', bool)[g:], buf('flag2', bool)[g:]
            np.copyto(idx, np.multiply(z_world, f32(1 / GROUND_TEXEL_M), out=tmp),
                      casting='unsafe')
            idx &= n - 1
            idx *= n
            np.copyto(idx2, np.multiply(x_world, f32(1 / GROUND_TEXEL_M), out=tmp),
                      casting='unsafe')
            idx2 &= n - 1
            idx += idx2
            idx += np.multiply(np.logical_not(road, out=flag), np.int32(n * n), out=idx2)
            value = self._ground_tex.take(idx, out=buf('value')[g:], mode='clip')
            value *= f32(0.8)
            value += f32(0.6)
            value *= mean
            # Lane markings: a dashed centre line (3 m of every 6 m) and solid edge lines.
            np.copyto(idx2, np.multiply(z_world, f32(1 / 3), out=tmp), casting='unsafe')
            idx2 &= 1
            centre = np.equal(idx2, 0, out=flag)
            centre &= np.less(dist, f32(0.075), out=flag2)
            dist -= f32(cfg.road_half_width_m - 0.2)
            marked = np.less(np.abs(dist, out=dist), f32(0.075), out=flag2)
            marked |= centre
            np.maximum(value, np.multiply(marked, f32(MARKING), out=tmp), out=value)
            value -= mean
            value *= self._ground_fade[g:, None]
            value += mean
        ids = GROUND_IDS.take(road.view(np.uint8), out=buf('ids', np.uint8)[g:], mode='clip')
        k = full - part  # rows where the panorama may still show
        z_rows = np.broadcast_to(z, value.shape)
        intensity[full:] = value[k:]
        depth[full:] = z_rows[k:]
        labels[full:] = ids[k:]
        if k:
            visible = np.less(z_rows[:k], depth[part:full], out=buf('visible', bool)[g:g + k])
            np.copyto(intensity[part:full], value[:k], where=visible)
            np.copyto(depth[part:full], z_rows[:k], where=visible)
            np.copyto(labels[part:full], ids[:k], where=visible)
