"""What the synthetic street contains: configuration, objects and background, drawn from a seed.

The scene is a straight street seen from a vehicle: a ground plane (road between the kerbs,
sidewalk beyond), a far panorama of building and vegetation bands 40-80 m away, and
billboard objects (cars, people, poles, traffic signs, fences) that always face the camera,
so every pixel of one has the same, known depth. Objects move in 3D along straight lines
(plus a sway for people); in the random layout they recycle along the street so that a
long recording stays populated: an object that falls behind the camera comes back 30 m
ahead, where it is small, instead of leaving the street empty.
"""

from dataclasses import dataclass, field
import math

import numpy as np

from gep_model.classes import DSEC_11

from .textures import blend, checker, mipmaps, smooth_noise, stripes

CLASS_IDS = {name: i for i, (name, _) in enumerate(DSEC_11)}
SHAPES = ('rect', 'ellipse', 'car', 'fence')
TEXTURE_SIZE = 64


@dataclass(frozen=True)
class SceneConfig:
    """Camera, ego-motion and scene parameters; the defaults make a 346x260 DAVIS-like view.

    `objects` replaces the random objects by the given SceneObjects (`num_objects` is then
    ignored). `textured=False` makes every surface flat (its brightness only), which gives
    scenes whose events can be predicted exactly.
    """

    width: int = 346
    height: int = 260
    hfov_deg: float = 70.0
    camera_height_m: float = 1.5
    ego_speed: float = 2.0  # m/s forward
    yaw_amplitude_deg: float = 4.0
    yaw_period_s: float = 6.0
    num_objects: int = 8
    objects: tuple = None
    ground: bool = True
    road_half_width_m: float = 3.5
    background_depth_m: tuple = (40.0, 80.0)
    textured: bool = True
    near_clip_m: float = 0.3  # billboards closer than this are not drawn
    street_span_m: tuple = (-6.0, 30.0)  # where recycling objects live, ahead of the camera


@dataclass(eq=False)
class SceneObject:
    """A camera-facing billboard: a rectangle, ellipse, car silhouette or fence of slats.

    `position` is the world point (X, Y, Z) at the bottom centre at t = 0 (Y = 0 stands on
    the ground, Y = -e floats e metres above it); it moves by `velocity` (m/s) plus a lateral
    sway of `sway_m` metres with period `sway_period_s`. The whole billboard sits at the
    camera-frame depth of that point. Brightness is the mean reflectance in (0, 1];
    `texture` ((n, n) float32 in [0, 1], n a power of two) modulates it by +-`contrast`.
    `recycle` wraps the object along the street span (random layouts only).
    """

    label: str
    shape: str
    width_m: float
    height_m: float
    position: tuple
    velocity: tuple = (0.0, 0.0, 0.0)
    brightness: float = 0.5
    texture: np.ndarray = None
    contrast: float = 0.0
    sway_m: float = 0.0
    sway_period_s: float = 3.0
    sway_phase: float = 0.0
    recycle: bool = False
    class_id: int = field(init=False)
    levels: list = field(init=False, repr=False)

    def __post_init__(self):
        if self.label not in CLASS_IDS:
            raise ValueError(f'unknown class {self.label!r} (DSEC_11: {", ".join(CLASS_IDS)})')
        if self.shape not in SHAPES:
            raise ValueError(f'unknown shape {self.shape!r} (one of {", ".join(SHAPES)})')
        self.class_id = CLASS_IDS[self.label]
        tex = self.texture if self.texture is not None and self.contrast else None
        if tex is not None:
            n = tex.shape[0]
            if tex.ndim != 2 or tex.shape[1] != n or n & (n - 1):
                raise ValueError(f'texture must be square with a power-of-two side, got '
                                 f'{tex.shape}')
        self.levels = mipmaps(tex) if tex is not None else None

    def world_position(self, t_s, camera_z, span):
        """World (X, Y, Z) of the bottom centre at t_s; recycled into `span` ahead of camera_z."""
        x, y, z = (p + v * t_s for p, v in zip(self.position, self.velocity))
        if self.sway_m:
            x += self.sway_m * math.sin(2 * math.pi * t_s / self.sway_period_s + self.sway_phase)
        if self.recycle:
            lo, hi = span
            z = camera_z + lo + (z - camera_z - lo) % (hi - lo)
        return x, y, z


@dataclass(frozen=True, eq=False)
class Background:
    """The far panorama: bands of building or vegetation around the camera, by azimuth.

    Band i covers azimuths [edges[i], edges[i + 1]) (radians, world frame, 0 = ahead) at
    horizontal range ranges[i]; kinds[i] is 0 for building, 1 for vegetation.
    """

    edges: np.ndarray  # (B + 1,) float64 from -pi to pi
    ranges: np.ndarray  # (B,) float64 metres
    kinds: np.ndarray  # (B,) int64
    class_ids: np.ndarray  # (B,) uint8
    brightness: np.ndarray  # (B,) float32
    offsets: np.ndarray  # (B,) float64 texture offset in metres, so bands differ


def random_background(config, rng):
    """Bands 4-12 degrees wide, alternately likely building and vegetation."""
    widths = []
    while sum(widths) < 2 * math.pi:
        widths.append(math.radians(rng.uniform(4.0, 12.0)))
    edges = -math.pi + np.concatenate([[0.0], np.cumsum(widths)])
    edges[-1] = math.pi  # the last band absorbs the excess
    n = len(widths)
    kinds = (rng.random(n) < 0.4).astype(np.int64)
    lo, hi = config.background_depth_m
    names = np.array([CLASS_IDS['building'], CLASS_IDS['vegetation']], np.uint8)
    return Background(edges, rng.uniform(lo, hi, n), kinds, names[kinds],
                      rng.uniform(0.25, 0.75, n).astype(np.float32), rng.uniform(0, 100, n))


def _side(rng):
    return 1.0 if rng.random() < 0.5 else -1.0


def _car(config, rng):
    lane = _side(rng)
    # The lane right of the centre line drives away from the camera, the left one towards it.
    speed = rng.uniform(1.0, 5.0) if lane > 0 else -rng.uniform(3.0, 8.0)
    tex = blend((0.6, smooth_noise(rng, TEXTURE_SIZE, 4)),
                (0.4, stripes(TEXTURE_SIZE, int(rng.integers(2, 5)))))
    return [SceneObject('car', 'car', rng.uniform(1.7, 2.0), rng.uniform(1.4, 1.6),
                        (lane * 1.75 + rng.normal(0, 0.15), 0.0, rng.uniform(3, 30)),
                        (0.0, 0.0, speed), rng.uniform(0.15, 0.85), tex, 0.45, recycle=True)]


def _person(config, rng):
    side = _side(rng)
    tex = blend((0.7, stripes(TEXTURE_SIZE, int(rng.integers(2, 7)))),
                (0.3, smooth_noise(rng, TEXTURE_SIZE, 4)))
    x = side * (config.road_half_width_m + rng.uniform(0.8, 3.0))
    return [SceneObject('person', 'ellipse', rng.uniform(0.5, 0.6), rng.uniform(1.6, 1.85),
                        (x, 0.0, rng.uniform(3, 30)),
                        (0.0, 0.0, _side(rng) * rng.uniform(0.8, 1.6)),
                        rng.uniform(0.2, 0.8), tex, 0.4, sway_m=rng.uniform(0.1, 0.4),
                        sway_period_s=rng.uniform(2.0, 4.0), sway_phase=rng.uniform(0, 6.3),
                        recycle=True)]


def _pole(config, rng):
    x = _side(rng) * (config.road_half_width_m + rng.uniform(0.4, 1.2))
    return [SceneObject('pole', 'rect', rng.uniform(0.15, 0.25), rng.uniform(4.0, 6.0),
                        (x, 0.0, rng.uniform(3, 30)), brightness=rng.uniform(0.3, 0.7),
                        texture=smooth_noise(rng, TEXTURE_SIZE, 2), contrast=0.3, recycle=True)]


def _traffic_sign(config, rng):
    x = _side(rng) * (config.road_half_width_m + rng.uniform(0.4, 1.0))
    z = rng.uniform(3, 30)
    plate = rng.uniform(0.6, 0.75)
    mount = 1.9
    pole = SceneObject('pole', 'rect', 0.08, mount + plate / 2, (x, 0.0, z),
                       brightness=0.5, texture=smooth_noise(rng, TEXTURE_SIZE, 2),
                       contrast=0.2, recycle=True)
    # The plate hangs 5 cm in front of its pole, so the depth order is physical.
    sign = SceneObject('traffic sign', 'ellipse', plate, plate, (x, -mount, z - 0.05),
                       brightness=rng.uniform(0.5, 0.9), texture=checker(TEXTURE_SIZE, 2),
                       contrast=0.5, recycle=True)
    return [pole, sign]


def _fence(config, rng):
    x = _side(rng) * (config.road_half_width_m + rng.uniform(1.5, 4.5))
    return [SceneObject('fence', 'fence', rng.uniform(2.5, 4.0), rng.uniform(1.0, 1.4),
                        (x, 0.0, rng.uniform(3, 30)), brightness=rng.uniform(0.3, 0.8),
                        texture=smooth_noise(rng, TEXTURE_SIZE, 8), contrast=0.3, recycle=True)]


RECIPES = {'car': (_car, 3), 'person': (_person, 2), 'pole': (_pole, 1),
           'traffic sign': (_traffic_sign, 1), 'fence': (_fence, 1)}


def random_objects(config, rng):
    """`config.num_objects` objects: one of each kind first, then kinds by weight."""
    kinds = list(RECIPES)
    weights = np.array([w for _, w in RECIPES.values()], np.float64)
    extra = rng.choice(len(kinds), max(config.num_objects - len(kinds), 0),
                       p=weights / weights.sum())
    chosen = kinds[:config.num_objects] + [kinds[i] for i in extra]
    objects = []
    for kind in chosen:
        objects += RECIPES[kind][0](config, rng)
    return objects


def flatten(objects):
    """Copy the objects without their textures (for `SceneConfig.textured=False`)."""
    out = []
    for obj in objects:
        out.append(SceneObject(obj.label, obj.shape, obj.width_m, obj.height_m, obj.position,
                               obj.velocity, obj.brightness, None, 0.0, obj.sway_m,
                               obj.sway_period_s, obj.sway_phase, obj.recycle))
    return out
