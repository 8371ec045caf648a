"""Procedural textures: smoothed noise, stripes and checkers, tileable, with mipmaps.

Edges inside a texture are what make a moving surface produce events, so every surface
carries one. Textures are square float32 arrays in [0, 1] with a power-of-two side; they
tile seamlessly, so surfaces of any extent (the ground, the background panorama) sample them
with a wrapped index. Sprites pick the mipmap level that matches their size on screen,
which keeps far objects from aliasing into flicker (and into spurious events).
"""

import numpy as np


def _upsample_wrapped(grid, factor):
    """Bilinearly upsample an (m, m) grid by an integer factor, wrapping at the borders."""
    m = grid.shape[0]
    pos = np.arange(m * factor) / factor
    i0 = np.floor(pos).astype(np.int64)
    w = (pos - i0).astype(np.float32)
    i1 = (i0 + 1) % m
    rows = grid[i0] * (1 - w)[:, None] + grid[i1] * w[:, None]
    return rows[:, i0] * (1 - w)[None, :] + rows[:, i1] * w[None, :]


def _normalise(tex):
    lo, hi = float(tex.min()), float(tex.max())
    return ((tex - lo) / (hi - lo if hi > lo else 1.0)).astype(np.float32)


def smooth_noise(rng, size=64, cells=8, octaves=2):
    """Return (size, size) float32 value noise in [0, 1]: `cells` random values across, smoothed.

    Each further octave doubles the frequency at half the amplitude.
    """
    tex = np.zeros((size, size), np.float32)
    amplitude = 1.0
    for _ in range(octaves):
        cells = min(cells, size)
        grid = rng.random((cells, cells)).astype(np.float32)
        tex += amplitude * _upsample_wrapped(grid, size // cells)
        cells, amplitude = cells * 2, amplitude / 2
    return _normalise(tex)


def stripes(size=64, count=4, vertical=False, duty=0.5):
    """Return (size, size) float32 with `count` hard-edged bright bands (1) on dark (0)."""
    phase = (np.arange(size) * count / size) % 1.0
    line = (phase < duty).astype(np.float32)
    shape = (1, size) if vertical else (size, 1)  # vertical stripes vary along x
    return np.ascontiguousarray(np.broadcast_to(line.reshape(shape), (size, size)))


def checker(size=64, cells=4):
    """(size, size) float32 checkerboard of cells x cells squares, 0 and 1."""
    idx = np.arange(size) * cells // size
    return ((idx[:, None] + idx[None, :]) % 2).astype(np.float32)


def blend(*weighted):
    """Weighted sum of (weight, texture) pairs, renormalised to [0, 1]."""
    return _normalise(sum(w * t for w, t in weighted))


def mipmaps(tex):
    """Levels of a (2^k, 2^k) texture, finest first, each the 2x2 mean of the one before."""
    levels = [np.ascontiguousarray(tex, np.float32)]
    while levels[-1].shape[0] > 1:
        t = levels[-1]
        levels.append(0.25 * (t[0::2, 0::2] + t[1::2, 0::2] + t[0::2, 1::2] + t[1::2, 1::2]))
    return levels
