"""Shape categories and textures of the teaching world.

The teaching world (DESIGN.md, "The teaching world") has a few *shape categories*: they are the
instance-segmentation classes of the IS branch (§3.1; the ``lite`` preset has ``num_classes = 4``).
Every object gets its own texture, drawn in the object's own coordinates so that it moves, turns
and scales with the object. Look-alike distractors (the failure case of Fig. 1) copy both the
category and the texture of their target.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    "SHAPE_CATEGORIES",
    "TEXTURE_KINDS",
    "TextureSpec",
    "unit_outline",
    "random_texture_spec",
    "render_texture",
    "render_background",
]

# category name -> COCO category id (index + 1). Four classes, matching ModelConfig "lite".num_classes.
SHAPE_CATEGORIES: tuple[str, ...] = ("disc", "box", "triangle", "star")
TEXTURE_KINDS: tuple[str, ...] = ("stripes", "checker", "dots", "blobs")

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


def unit_outline(category: str) -> np.ndarray:
    """(OUTLINE_POINTS, 2) outline centred at 0 with the area of a unit disc (pi), so categories are equally big."""
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
    else:
        raise ValueError(f"unknown shape category {category!r}; choose one of {', '.join(SHAPE_CATEGORIES)}")
    return points * np.sqrt(np.pi / _polygon_area(points))


@dataclass(frozen=True)
class TextureSpec:
    """Everything needed to redraw an object's texture (look-alikes share one spec)."""
    kind: str
    color_a: tuple[int, int, int]
    color_b: tuple[int, int, int]
    period: float          # pattern size in pixels (at scale 1)
    angle: float           # pattern orientation, radians
    seed: int              # for the random parts (dots, blobs)


def _random_color(rng: np.random.Generator) -> tuple[int, int, int]:
    hue = rng.uniform(0, 180)
    sat = rng.uniform(120, 255)
    val = rng.uniform(110, 255)
    hsv = np.array([[[hue, sat, val]]], dtype=np.uint8)
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


def random_texture_spec(rng: np.random.Generator) -> TextureSpec:
    color_a = _random_color(rng)
    color_b = _random_color(rng)
    # keep the two colours apart so that the pattern is visible
    while np.abs(np.subtract(color_a, color_b)).sum() < 120:
        color_b = _random_color(rng)
    return TextureSpec(
        kind=str(rng.choice(TEXTURE_KINDS)),
        color_a=color_a,
        color_b=color_b,
        period=float(rng.uniform(7, 16)),
        angle=float(rng.uniform(0, np.pi)),
        seed=int(rng.integers(0, 2**31 - 1)),
    )


def render_texture(spec: TextureSpec, size: int) -> np.ndarray:
    """A (size, size, 3) uint8 RGB texture tile, drawn in object coordinates (centre = object centre)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) - (size - 1) / 2
    u = xx * np.cos(spec.angle) + yy * np.sin(spec.angle)
    v = -xx * np.sin(spec.angle) + yy * np.cos(spec.angle)
    if spec.kind == "stripes":
        weight = 0.5 + 0.5 * np.sin(2 * np.pi * u / spec.period)
        weight = np.clip((weight - 0.5) * 3 + 0.5, 0, 1)
    elif spec.kind == "checker":
        weight = ((np.floor(u / spec.period) + np.floor(v / spec.period)) % 2).astype(np.float32)
    elif spec.kind == "dots":
        cu = (u / spec.period) % 1.0 - 0.5
        cv = (v / spec.period) % 1.0 - 0.5
        weight = (cu**2 + cv**2 < 0.09).astype(np.float32)
    elif spec.kind == "blobs":
        rng = np.random.default_rng(spec.seed)
        coarse = max(2, int(size / spec.period))
        noise = rng.random((coarse, coarse)).astype(np.float32)
        weight = cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
        weight = np.clip((weight - 0.5) * 3 + 0.5, 0, 1)
    else:
        raise ValueError(f"unknown texture kind {spec.kind!r}")
    a = np.array(spec.color_a, dtype=np.float32)
    b = np.array(spec.color_b, dtype=np.float32)
    texture = a * (1 - weight[..., None]) + b * weight[..., None]        # (S, S, 3)
    # soft shading: lit from the top left, so objects look a little 3-D
    shade = 1.0 + 0.18 * (-(xx + yy) / size)
    texture = texture * shade[..., None]
    return np.clip(texture, 0, 255).astype(np.uint8)


def render_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A (height, width, 3) uint8 textured background: smooth colour field + faint mid-frequency pattern."""
    colors = np.array([_random_color(rng) for _ in range(3)], dtype=np.float32) * 0.75   # (3, 3) muted
    field = np.zeros((height, width, 3), dtype=np.float32)
    weights = []
    for _ in range(3):
        coarse = rng.random((3 + int(rng.integers(0, 3)), 4 + int(rng.integers(0, 4)))).astype(np.float32)
        weights.append(cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC))
    weights = np.clip(np.stack(weights, axis=-1), 0.01, None)                            # (H, W, 3)
    weights = weights / weights.sum(axis=-1, keepdims=True)
    field = weights @ colors                                                             # (H, W, 3)
    # a faint pattern so the background is not flat (the model must not segment "anything textured")
    detail_spec = random_texture_spec(rng)
    tile = render_texture(detail_spec, max(height, width)).astype(np.float32)[:height, :width]
    field = 0.8 * field + 0.2 * tile
    grain = rng.normal(0, 1.5, size=(height, width, 1)).astype(np.float32)
    return np.clip(field + grain, 0, 255).astype(np.uint8)
