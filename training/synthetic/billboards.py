"""Draw camera-facing objects (billboards) into the images, with a depth test.

A billboard at camera-frame bottom centre (x, y, z), w metres wide and h tall, covers the
pixels whose centres fall in [u0, u1) x [v0, v1), the projection of [x - w/2, x + w/2] x
[y - h, y] at depth z, intersected with its silhouette (ellipse, car, fence of slats).
Every pixel it covers gets depth z exactly and its class id; textures come from the
mipmap level whose texel count across matches the pixels shown, so far objects do not
alias into flicker.
"""

import math

import numpy as np


def draw_billboard(obj, pose, camera, near_clip_m, intensity, depth, labels):
    """Draw SceneObject `obj` at camera-frame `pose` (x, y, z) where nothing nearer is."""
    x, y, z = pose
    if z < near_clip_m:
        return
    u0 = camera.cx + camera.fx * (x - obj.width_m / 2) / z
    u1 = camera.cx + camera.fx * (x + obj.width_m / 2) / z
    v0 = camera.cy + camera.fy * (y - obj.height_m) / z
    v1 = camera.cy + camera.fy * y / z
    c0, c1 = max(math.ceil(u0), 0), min(math.ceil(u1), camera.width)
    r0, r1 = max(math.ceil(v0), 0), min(math.ceil(v1), camera.height)
    if c0 >= c1 or r0 >= r1:
        return
    a = ((np.arange(c0, c1) - u0) / (u1 - u0)).astype(np.float32)  # 0 left .. 1 right
    b = ((np.arange(r0, r1) - v0) / (v1 - v0)).astype(np.float32)  # 0 top .. 1 bottom
    block = (slice(r0, r1), slice(c0, c1))
    z32 = np.float32(z)
    # `<=`: the ground row at the object's foot has the object's own depth, give or take
    # float32 rounding, and belongs to the object.
    inside = z32 <= depth[block]
    shape = silhouette(obj, a, b)
    if shape is not None:
        inside &= shape
    if obj.levels is None:
        value = np.float32(obj.brightness)
    else:
        tex = sample_texture(obj.levels, a, b, max(u1 - u0, v1 - v0))
        value = obj.brightness * (1 + obj.contrast * (2 * tex - 1))
    np.copyto(intensity[block], value, where=inside)
    depth[block][inside] = z32
    labels[block][inside] = obj.class_id


def silhouette(obj, a, b):
    """(len(b), len(a)) bool shape in billboard coordinates; None for a full rectangle."""
    if obj.shape == 'rect':
        return None
    if obj.shape == 'ellipse':
        return ((2 * a - 1) ** 2)[None, :] + ((2 * b - 1) ** 2)[:, None] < 1
    if obj.shape == 'car':
        # Body over the lower 55 %, a narrower cabin above it.
        return (b >= 0.45)[:, None] | ((a >= 0.18) & (a < 0.82))[None, :]
    slats = max(round(obj.width_m / 0.25), 1)  # fence: slats 25 cm apart and two rails
    slat = (a * slats) % 1 < 0.55
    rail = (b < 0.12) | ((b >= 0.55) & (b < 0.65))
    return slat[None, :] | rail[:, None]


def sample_texture(levels, a, b, size_px):
    """Nearest texels, (len(b), len(a)), of the mipmap level no finer than `size_px` across."""
    level = min(max(math.ceil(math.log2(levels[0].shape[0] / max(size_px, 1.0))), 0),
                len(levels) - 1)
    tex = levels[level]
    n = tex.shape[0]
    ia = np.minimum((a * n).astype(np.int64), n - 1)
    ib = np.minimum((b * n).astype(np.int64), n - 1)
    return tex[np.ix_(ib, ia)]
