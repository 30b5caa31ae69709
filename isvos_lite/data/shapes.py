"""Shape categories, textures and backgrounds of the teaching world.

The teaching world (docs/DATA.md) has four *shape categories*: they are the
instance-segmentation classes of the IS branch (§3.1; the ``lite`` preset has ``num_classes = 4``).
Every object gets its own texture, drawn in the object's own coordinates so that it moves, turns
and scales with the object.

Two disjoint sets of looks exist, so that generalisation can be measured honestly:

* ``TEXTURE_FAMILIES_TRAIN`` and ``SHAPE_CATEGORIES`` (and the training background kinds) are what
  the ``train``, ``val`` and ``lookalike`` splits are made of;
* ``TEXTURE_FAMILIES_HELDOUT``, ``HELDOUT_SHAPES`` and ``BACKGROUND_KINDS_HELDOUT`` appear only in
  the ``heldout`` split: the model never sees them while training.

Everything is procedural and a pure function of a ``numpy.random.Generator``, except the ``photo``
family (``PHOTO_FAMILY``): windows of real photographs that ship inside pip packages
(:mod:`isvos_lite.data.photos`), used by the ``trainphoto`` videos and the instance stream's photo option.
Look-alikes (the failure case of Fig. 1) share their target's :class:`TextureSpec`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    "SHAPE_CATEGORIES",
    "HELDOUT_SHAPES",
    "TEXTURE_FAMILIES_TRAIN",
    "TEXTURE_FAMILIES_HELDOUT",
    "TEXTURE_KINDS",
    "PHOTO_FAMILY",
    "BACKGROUND_KINDS_TRAIN",
    "BACKGROUND_KINDS_HELDOUT",
    "TextureSpec",
    "unit_outline",
    "random_texture_spec",
    "render_texture",
    "render_background",
]

# category name -> COCO category id (index + 1). Four classes, matching ModelConfig "lite".num_classes.
SHAPE_CATEGORIES: tuple[str, ...] = ("disc", "box", "triangle", "star")
# silhouettes never used in training: only the ``heldout`` split has them
HELDOUT_SHAPES: tuple[str, ...] = ("cross", "crescent", "heart")

TEXTURE_FAMILIES_TRAIN: tuple[str, ...] = ("stripes", "checker", "dots", "blobs", "noise", "cells", "gradient", "fractal")
TEXTURE_FAMILIES_HELDOUT: tuple[str, ...] = ("rings", "zigzag", "hexgrid", "plaid")
TEXTURE_KINDS = TEXTURE_FAMILIES_TRAIN      # the v1 name, kept for compatibility
# windows of real photographs (isvos_lite.data.photos): the textures and backgrounds of the `trainphoto` videos and
# of the instance stream's photo option, beside the procedural families
PHOTO_FAMILY = "photo"

# background kinds (see render_background); "tiles" is only used by the heldout split
BACKGROUND_KINDS_TRAIN: tuple[str, ...] = ("field", "fractal", "cells", "clutter")
BACKGROUND_KINDS_HELDOUT: tuple[str, ...] = ("tiles",)

OUTLINE_POINTS = 96   # contour samples per shape: enough for smooth curves at 480p


def _resample_closed(vertices: np.ndarray, n: int) -> np.ndarray:
    """Resample a closed polygon (V, 2) to n points evenly spaced along its perimeter."""
    closed = np.concatenate([vertices, vertices[:1]], axis=0)
    seg = np.linalg.norm(np.diff(closed, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    targets = np.linspace(0.0, cum[-1], n, endpoint=False)
    x = np.interp(targets, cum, closed[:, 0])
    y = np.interp(targets, cum, closed[:, 1])
    return np.stack([x, y], axis=1)


def _polygon_area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _polygon_centroid(points: np.ndarray) -> np.ndarray:
    """Area centroid (2,) of a simple polygon (P, 2)."""
    x, y = points[:, 0], points[:, 1]
    cross = x * np.roll(y, -1) - np.roll(x, -1) * y
    area = cross.sum() / 2
    cx = ((x + np.roll(x, -1)) * cross).sum() / (6 * area)
    cy = ((y + np.roll(y, -1)) * cross).sum() / (6 * area)
    return np.array([cx, cy])


def unit_outline(category: str) -> np.ndarray:
    """(OUTLINE_POINTS, 2) outline centred at 0 with the area of a unit disc (pi), so categories are equally big.

    ``category`` is one of ``SHAPE_CATEGORIES`` (training) or ``HELDOUT_SHAPES`` (heldout split only).
    """
    return _unit_outline_cached(category).copy()


@functools.lru_cache(maxsize=None)
def _unit_outline_cached(category: str) -> np.ndarray:
    if category == "disc":
        angles = np.linspace(0, 2 * np.pi, OUTLINE_POINTS, endpoint=False)
        points = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    elif category == "box":
        points = _resample_closed(np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64), OUTLINE_POINTS)
    elif category == "triangle":
        angles = -np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        points = _resample_closed(np.stack([np.cos(angles), np.sin(angles)], axis=1), OUTLINE_POINTS)
    elif category == "star":
        angles = -np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.48)
        points = _resample_closed(np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1), OUTLINE_POINTS)
    elif category == "cross":
        a, b = 0.33, 1.0      # half arm width, half arm length
        vertices = np.array([[-a, -b], [a, -b], [a, -a], [b, -a], [b, a], [a, a], [a, b], [-a, b], [-a, a],
                             [-b, a], [-b, -a], [-a, -a]], dtype=np.float64)
        points = _resample_closed(vertices, OUTLINE_POINTS)
    elif category == "crescent":
        # outer unit circle minus a circle of radius 0.8 centred at (0.5, 0); they meet at x = 0.61
        meet_x = 0.61
        meet_y = np.sqrt(1 - meet_x**2)
        outer_start = np.arctan2(meet_y, meet_x)
        outer = np.linspace(outer_start, 2 * np.pi - outer_start, 64)
        inner_start = np.arctan2(-meet_y, meet_x - 0.5)              # back along the inner circle
        inner = np.linspace(inner_start, inner_start - (2 * np.pi + 2 * inner_start), 48)[1:-1]
        vertices = np.concatenate([np.stack([np.cos(outer), np.sin(outer)], axis=1),
                                   np.stack([0.5 + 0.8 * np.cos(inner), 0.8 * np.sin(inner)], axis=1)])
        points = _resample_closed(vertices, OUTLINE_POINTS)
    elif category == "heart":
        s = np.linspace(0, 2 * np.pi, 200, endpoint=False)
        vertices = np.stack([16 * np.sin(s) ** 3,
                             -(13 * np.cos(s) - 5 * np.cos(2 * s) - 2 * np.cos(3 * s) - np.cos(4 * s))], axis=1)
        points = _resample_closed(vertices, OUTLINE_POINTS)
    else:
        raise ValueError(f"unknown shape category {category!r}; choose one of "
                         f"{', '.join(SHAPE_CATEGORIES + HELDOUT_SHAPES)}")
    points = points - _polygon_centroid(points)
    return points * np.sqrt(np.pi / _polygon_area(points))


@dataclass(frozen=True)
class TextureSpec:
    """Everything needed to redraw an object's texture (look-alikes share one spec).

    Two-colour families mix ``color_a`` and ``color_b``; the palette families (``cells``,
    ``gradient``, ``fractal``, ``plaid``) also use ``color_c``.
    """
    kind: str
    color_a: tuple[int, int, int]
    color_b: tuple[int, int, int]
    period: float          # pattern size in pixels (at scale 1)
    angle: float           # pattern orientation, radians
    seed: int              # for the random parts (dots, blobs, noise, cells, fractal)
    color_c: tuple[int, int, int] = (128, 128, 128)


def _random_color(rng: np.random.Generator) -> tuple[int, int, int]:
    hue = rng.uniform(0, 180)
    sat = rng.uniform(120, 255)
    val = rng.uniform(110, 255)
    hsv = np.array([[[hue, sat, val]]], dtype=np.uint8)
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


def _check_families(families) -> tuple[str, ...]:
    families = tuple(families)
    known = TEXTURE_FAMILIES_TRAIN + TEXTURE_FAMILIES_HELDOUT
    unknown = [f for f in families if f not in known]
    if not families or unknown:
        raise ValueError(f"families must be a non-empty subset of {known}, got {families}; use "
                         "TEXTURE_FAMILIES_TRAIN or TEXTURE_FAMILIES_HELDOUT")
    return families


def random_texture_spec(rng: np.random.Generator, families=TEXTURE_FAMILIES_TRAIN) -> TextureSpec:
    """A random texture of one of ``families`` (default: the training families)."""
    families = _check_families(families)
    color_a = _random_color(rng)
    color_b = _random_color(rng)
    # keep the colours apart so that the pattern is visible
    while np.abs(np.subtract(color_a, color_b)).sum() < 120:
        color_b = _random_color(rng)
    color_c = _random_color(rng)
    return TextureSpec(
        kind=str(families[int(rng.integers(0, len(families)))]),
        color_a=color_a,
        color_b=color_b,
        period=float(rng.uniform(7, 16)),
        angle=float(rng.uniform(0, np.pi)),
        seed=int(rng.integers(0, 2**31 - 1)),
        color_c=color_c,
    )


def _smooth_noise(rng: np.random.Generator, size_hw: tuple[int, int], cells: float) -> np.ndarray:
    """(H, W) float32 noise in [0, 1] with about ``cells`` random values across the longer side (cubic)."""
    h, w = size_hw
    coarse_h = max(2, int(round(cells * h / max(h, w))) + 1)
    coarse_w = max(2, int(round(cells * w / max(h, w))) + 1)
    noise = rng.random((coarse_h, coarse_w)).astype(np.float32)
    return cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)


def _normalise(x: np.ndarray) -> np.ndarray:
    """Stretch to [0, 1] (robust to flat inputs)."""
    lo, hi = np.percentile(x, 2), np.percentile(x, 98)
    return np.clip((x - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32)


def _palette(weight: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """Map a (H, W) weight in [0, 1] through a (K, 3) colour ramp: (H, W, 3) float32."""
    k = len(colors)
    pos = np.clip(weight, 0, 1) * (k - 1)
    low = np.minimum(np.floor(pos).astype(np.int64), k - 2)
    frac = (pos - low)[..., None]
    return (colors[low] * (1 - frac) + colors[low + 1] * frac).astype(np.float32)


def _fractal(rng: np.random.Generator, size_hw: tuple[int, int], base_cells: float, octaves: int = 5) -> np.ndarray:
    """(H, W) 1/f-like field in [0, 1]: octaves of smooth noise, amplitude halving as frequency doubles."""
    total = np.zeros(size_hw, dtype=np.float32)
    for k in range(octaves):
        total += _smooth_noise(rng, size_hw, base_cells * 2**k) * 0.5**k
    return _normalise(total)


def _voronoi(rng: np.random.Generator, size_hw: tuple[int, int], cell: float, jitter_px: tuple[float, float] = (0.0, 0.0)):
    """Voronoi cell index (H, W) int and the distance gap to the second-nearest seed (H, W), seeds ~``cell`` apart."""
    h, w = size_hw
    n_y, n_x = max(1, int(np.ceil(h / cell))) + 1, max(1, int(np.ceil(w / cell))) + 1
    gy, gx = np.mgrid[0:n_y, 0:n_x].astype(np.float32)
    seeds = np.stack([(gx + rng.uniform(-0.45, 0.45, gx.shape)) * cell, (gy + rng.uniform(-0.45, 0.45, gy.shape)) * cell],
                     axis=-1).reshape(-1, 2).astype(np.float32)                       # (K, 2) (x, y)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    best = np.full((h, w), np.inf, dtype=np.float32)
    second = np.full((h, w), np.inf, dtype=np.float32)
    index = np.zeros((h, w), dtype=np.int64)
    for k, (sx, sy) in enumerate(seeds):
        d = (xx - sx) ** 2 + (yy - sy) ** 2
        closer = d < best
        second = np.where(closer, best, np.minimum(second, d))
        best = np.where(closer, d, best)
        index[closer] = k
    return index, np.sqrt(second) - np.sqrt(best), len(seeds)


def render_texture(spec: TextureSpec, size: int) -> np.ndarray:
    """A (size, size, 3) uint8 RGB texture tile, drawn in object coordinates (centre = object centre).

    ``spec.kind == "photo"``: a window of a real photograph (:func:`isvos_lite.data.photos.photo_texture`).
    """
    if spec.kind == PHOTO_FAMILY:
        from isvos_lite.data.photos import photo_texture
        return photo_texture(spec.seed, size)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) - (size - 1) / 2
    u = xx * np.cos(spec.angle) + yy * np.sin(spec.angle)                     # (S, S) pattern coordinates
    v = -xx * np.sin(spec.angle) + yy * np.cos(spec.angle)
    a = np.array(spec.color_a, dtype=np.float32)
    b = np.array(spec.color_b, dtype=np.float32)
    c = np.array(spec.color_c, dtype=np.float32)
    rng = np.random.default_rng(spec.seed)
    p = spec.period
    texture = None                                                           # (S, S, 3) float32 when set directly
    if spec.kind == "stripes":
        weight = 0.5 + 0.5 * np.sin(2 * np.pi * u / p)
        weight = np.clip((weight - 0.5) * 3 + 0.5, 0, 1)
    elif spec.kind == "checker":
        weight = ((np.floor(u / p) + np.floor(v / p)) % 2).astype(np.float32)
    elif spec.kind == "dots":
        cu = (u / p) % 1.0 - 0.5
        cv = (v / p) % 1.0 - 0.5
        weight = (cu**2 + cv**2 < 0.09).astype(np.float32)
    elif spec.kind == "blobs":
        weight = _smooth_noise(rng, (size, size), size / p)
        weight = np.clip((weight - 0.5) * 3 + 0.5, 0, 1)
    elif spec.kind == "noise":
        # band-pass: fine noise minus a coarser version, then a little per-channel colour noise
        band = _smooth_noise(rng, (size, size), 2 * size / p) - _smooth_noise(rng, (size, size), size / (2 * p))
        weight = np.clip((band - band.mean()) * 2.2 + 0.5, 0, 1)
        tint = (_smooth_noise(rng, (size, size), 2 * size / p)[..., None] - 0.5) * (c - (a + b) / 2) * 0.6
        texture = a * (1 - weight[..., None]) + b * weight[..., None] + tint
    elif spec.kind == "cells":
        index, gap, count = _voronoi(rng, (size, size), 1.6 * p)
        colors = np.stack([a, b, c, (a + b) / 2])[: int(rng.integers(2, 5))]       # 2-4 colours
        choice = rng.integers(0, len(colors), size=count)
        texture = colors[choice[index]]
        texture = texture * np.where(gap < 1.2, 0.55, 1.0)[..., None]            # thin dark borders
    elif spec.kind == "gradient":
        t = u / (4 * p) + 0.15 * np.sin(2 * np.pi * v / (6 * p))
        phase = (t % 3.0) / 3.0                                                  # cycles a -> b -> c -> a
        ramp = _palette(phase, np.stack([a, b, c, a]))
        bands = 0.88 + 0.12 * np.sign(np.sin(2 * np.pi * t * 1.5))              # a few soft bands
        texture = ramp * bands[..., None]
    elif spec.kind == "fractal":
        weight = _fractal(rng, (size, size), max(2.0, size / (3 * p)))
        texture = _palette(weight, np.stack([a, c, b]))
    elif spec.kind == "rings":
        r = np.sqrt(u**2 + v**2)
        weight = np.clip((0.5 + 0.5 * np.sin(2 * np.pi * r / p)) * 3 - 1, 0, 1)
    elif spec.kind == "zigzag":
        tri = 2 * np.abs((u / (1.5 * p)) % 1.0 - 0.5)                           # triangle wave in [0, 1]
        weight = np.clip((0.5 + 0.5 * np.sin(2 * np.pi * (v + 0.8 * p * tri) / p)) * 3 - 1, 0, 1)
    elif spec.kind == "hexgrid":
        k = 4 * np.pi / (np.sqrt(3) * p)
        field = sum(np.cos(k * (u * np.cos(t) + v * np.sin(t))) for t in (0.0, 2 * np.pi / 3, 4 * np.pi / 3))
        weight = (field > 0.6).astype(np.float32)                               # hexagonal lattice of spots
    elif spec.kind == "plaid":
        s1 = (0.5 + 0.5 * np.sin(2 * np.pi * u / (1.5 * p))) > 0.6
        s2 = (0.5 + 0.5 * np.sin(2 * np.pi * v / (1.5 * p))) > 0.6
        texture = np.broadcast_to(a, (size, size, 3)).copy()
        texture[s1] = 0.45 * texture[s1] + 0.55 * b
        texture[s2] = 0.45 * texture[s2] + 0.55 * c
    else:
        raise ValueError(f"unknown texture kind {spec.kind!r}; choose one of "
                         f"{', '.join(TEXTURE_FAMILIES_TRAIN + TEXTURE_FAMILIES_HELDOUT)}")
    if texture is None:
        texture = a * (1 - weight[..., None]) + b * weight[..., None]          # (S, S, 3)
    # soft shading: lit from the top left, so objects look a little 3-D
    shade = 1.0 + 0.18 * (-(xx + yy) / size)
    texture = texture * shade[..., None]
    return np.clip(texture, 0, 255).astype(np.uint8)


def _muted_colors(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 3) float32 colours darkened and desaturated a little: backgrounds stay less salient than objects."""
    colors = np.array([_random_color(rng) for _ in range(n)], dtype=np.float32)
    grey = colors.mean(axis=1, keepdims=True)
    return (0.6 * colors + 0.4 * grey) * 0.75


def _colour_field(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W, 3) smooth mix of three muted colours."""
    colors = _muted_colors(rng, 3)                                                        # (3, 3)
    weights = []
    for _ in range(3):
        coarse = rng.random((3 + int(rng.integers(0, 3)), 4 + int(rng.integers(0, 4)))).astype(np.float32)
        weights.append(cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC))
    weights = np.clip(np.stack(weights, axis=-1), 0.01, None)                             # (H, W, 3)
    weights = weights / weights.sum(axis=-1, keepdims=True)
    return weights @ colors                                                               # (H, W, 3)


def render_background(rng: np.random.Generator, height: int, width: int, families=TEXTURE_FAMILIES_TRAIN,
                      kind: str | None = None) -> np.ndarray:
    """A (height, width, 3) uint8 background, clearly less salient than the objects drawn on it.

    ``kind`` (drawn from ``BACKGROUND_KINDS_TRAIN`` by ``rng`` when None):

    ``field``    smooth colour field + a faint pattern of one of ``families``;
    ``fractal``  a low-contrast 1/f colour field (natural-image-like);
    ``cells``    large faint Voronoi cells over a colour field;
    ``clutter``  a two-colour gradient with faint, low-contrast shapes scattered on it;
    ``tiles``    (heldout split only) a faint large-scale pattern of a held-out family on a diagonal gradient.
    """
    families = _check_families(families)
    known = BACKGROUND_KINDS_TRAIN + BACKGROUND_KINDS_HELDOUT
    if kind is None:
        kind = str(BACKGROUND_KINDS_TRAIN[int(rng.integers(0, len(BACKGROUND_KINDS_TRAIN)))])
    if kind not in known:
        raise ValueError(f"unknown background kind {kind!r}; choose one of {', '.join(known)}")
    h, w = height, width
    if kind == "field":
        field = _colour_field(rng, h, w)
        # a faint pattern so the background is not flat (the model must not segment "anything textured")
        detail_spec = random_texture_spec(rng, families)
        tile = render_texture(detail_spec, max(h, w)).astype(np.float32)[:h, :w]
        field = 0.8 * field + 0.2 * tile
    elif kind == "fractal":
        colors = _muted_colors(rng, 3)
        weight = _fractal(rng, (h, w), float(rng.uniform(2.5, 5)))
        field = _palette(weight, colors)
        field = 0.55 * field + 0.45 * field.mean(axis=(0, 1), keepdims=True)           # low contrast
    elif kind == "cells":
        field = _colour_field(rng, h, w)
        index, gap, count = _voronoi(rng, (h, w), float(rng.uniform(0.3, 0.5)) * h)
        shades = rng.uniform(0.9, 1.1, size=(count, 3)).astype(np.float32)
        field = field * shades[index] * np.where(gap < 1.5, 0.9, 1.0)[..., None]
    elif kind == "clutter":
        c0, c1 = _muted_colors(rng, 2)
        angle = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        t = ((xx - w / 2) * np.cos(angle) + (yy - h / 2) * np.sin(angle)) / max(h, w) + 0.5
        field = _palette(np.clip(t, 0, 1), np.stack([c0, c1]))
        for _ in range(int(rng.integers(6, 14))):                                       # faint shapes
            category = SHAPE_CATEGORIES[int(rng.integers(0, len(SHAPE_CATEGORIES)))]
            radius = rng.uniform(0.04, 0.12) * h
            points = unit_outline(category) * radius
            rot = rng.uniform(0, 2 * np.pi)
            points = points @ np.array([[np.cos(rot), -np.sin(rot)], [np.sin(rot), np.cos(rot)]]).T
            points = points + [rng.uniform(0, w), rng.uniform(0, h)]
            mask = np.zeros((h, w), dtype=np.uint8)
            cv2.fillPoly(mask, [np.round(points * 16).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=4)
            alpha = mask.astype(np.float32)[..., None] / 255.0 * rng.uniform(0.12, 0.22)
            field = field * (1 - alpha) + _muted_colors(rng, 1)[0] * alpha
    else:  # "tiles"
        c0, c1 = _muted_colors(rng, 2)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        field = _palette(np.clip((xx + yy) / (h + w), 0, 1), np.stack([c0, c1]))
        spec = random_texture_spec(rng, families)
        spec = TextureSpec(spec.kind, spec.color_a, spec.color_b, spec.period * 2.5, spec.angle, spec.seed, spec.color_c)
        tile = render_texture(spec, max(h, w)).astype(np.float32)[:h, :w]
        field = 0.86 * field + 0.14 * tile
    grain = rng.normal(0, 1.5, size=(h, w, 1)).astype(np.float32)
    return np.clip(field + grain, 0, 255).astype(np.uint8)
