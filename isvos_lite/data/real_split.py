"""The ``real`` evaluation split: real photographs moving under a camera, with exact masks.

Training never shows the two photographs used here (:data:`isvos_lite.data.photos.REAL_SPLIT_PHOTOS`:
scikit-image's ``coins`` and scikit-learn's ``flower.jpg``), so this split measures how a model
trained on the teaching world does on natural image statistics. Two kinds of video alternate
(even indices ``coins``, odd ``composite``):

``coins``      real object boundaries: the coins of ``skimage.data.coins()`` are segmented once
               (a threshold against the local background, an opening, hole filling and connected
               components, https://scikit-image.org/docs/stable/user_guide/tutorial_segmentation.html);
               a camera pans, zooms and rotates smoothly over the photograph (always inside it), and
               1-2 coins are the annotated targets: every other coin is an unannotated look-alike.
               Frames and labels are the same similarity warp of the photograph and of its
               segmentation (bilinear for the image, nearest for the labels);
``composite``  1-2 cut-outs of ``flower.jpg`` shaped like smooth random silhouettes move on their
               own (translation across the frame, scale, rotation) over a panning, zooming window of
               another region of the same photograph: the labels are the exact hard fill of the
               silhouettes, the frames their anti-aliased composite.

Motion is large on purpose (over 30 frames the camera travels 0.12-0.15 of the frame width, turns
6-20 degrees and zooms up to x1.3; cut-outs travel 0.1-0.25 of the width, turn 20-70 degrees and
scale up to x1.35), so that copying the first frame's mask to every frame
(:mod:`isvos_lite.eval.baselines`) is a weak baseline (J&F about 0.4 at seed 0). Everything is a
pure function of ``(seed, index)``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage as ndi

from isvos_lite.data import photos
from isvos_lite.data.world import paint_textured_polygon

__all__ = ["REAL_KINDS", "REAL_FRAMES", "RealVideo", "real_video_kind", "sample_real_video", "coin_labels"]

REAL_KINDS = ("coins", "composite")
REAL_FRAMES = 30
_REAL_CODE = 6          # random-stream tag of the real split (the world's video kinds use 1-4)


@dataclass
class RealVideo:
    """One video of the ``real`` split: its frames and label maps, and what world.json records of it."""
    name: str
    kind: str
    frames: list[np.ndarray]        # (H, W, 3) uint8 RGB
    labels: list[np.ndarray]        # (H, W) uint8 object ids, 0 = background
    info: dict


def real_video_kind(index: int) -> str:
    """``coins`` for even indices, ``composite`` for odd ones."""
    return REAL_KINDS[index % 2]


@functools.lru_cache(maxsize=None)
def coin_labels() -> np.ndarray:
    """(303, 384) uint8 connected-component labels of the coins in ``skimage.data.coins()`` (0 = background).

    A pixel is a coin when it is 10 grey levels brighter than the local background (a Gaussian blur,
    sigma 25 px); then an opening (2 iterations), hole filling, and components of at least 500 pixels.
    """
    grey = photos.load_photo("coins")[..., 0].astype(np.float32)
    background = cv2.GaussianBlur(grey, (0, 0), 25)
    mask = ndi.binary_fill_holes(ndi.binary_opening(grey > background + 10, iterations=2))
    components, count = ndi.label(mask)
    areas = ndi.sum(mask, components, range(1, count + 1))
    lut = np.zeros(count + 1, dtype=np.uint8)
    kept = [i + 1 for i in range(count) if areas[i] >= 500]
    for new, old in enumerate(kept, start=1):
        lut[old] = new
    labels = lut[components]
    labels.setflags(write=False)
    return labels


def _camera_path(rng: np.random.Generator, photo_hw: tuple[int, int], height: int, width: int, frames: int,
                 zoom_range: tuple[float, float], travel: float) -> list[np.ndarray] | None:
    """(2, 3) matrices frame (x, y) -> photograph, one per frame: a smooth pan / zoom / rotation inside the photo.

    ``zoom`` is frame pixels per photograph pixel; the centre travels ``travel`` x the frame width (in frame
    pixels at the start zoom). None when no such path stays inside the photograph (the caller retries).
    """
    ph, pw = photo_hw
    z0 = float(rng.uniform(*zoom_range))
    z1 = z0 * float(np.exp(rng.uniform(-0.25, 0.25)))
    a0 = float(rng.uniform(-0.3, 0.3))
    a1 = a0 + float(rng.choice([-1.0, 1.0]) * rng.uniform(0.1, 0.35))
    heading = rng.uniform(0, 2 * np.pi)
    distance = travel * width / z0                                      # photograph pixels
    c0 = np.array([rng.uniform(0, pw), rng.uniform(0, ph)])
    c1 = c0 + distance * np.array([np.cos(heading), np.sin(heading)])
    sway = rng.uniform(-0.1, 0.1) * distance
    corners = np.array([[0, 0, 1], [width - 1, 0, 1], [0, height - 1, 1], [width - 1, height - 1, 1]], dtype=np.float64)
    matrices = []
    for t in range(frames):
        u = 0.5 - 0.5 * np.cos(np.pi * t / max(frames - 1, 1))           # eased 0 -> 1
        zoom = z0 * (z1 / z0) ** u
        angle = a0 + (a1 - a0) * u
        normal = np.array([-np.sin(heading), np.cos(heading)])
        centre = c0 + (c1 - c0) * u + normal * sway * np.sin(np.pi * u)
        c, s = np.cos(angle) / zoom, np.sin(angle) / zoom
        ox, oy = (width - 1) / 2, (height - 1) / 2
        matrix = np.array([[c, -s, centre[0] - c * ox + s * oy], [s, c, centre[1] - s * ox - c * oy]])
        mapped = corners @ matrix.T
        if mapped.min() < 0 or mapped[:, 0].max() > pw - 1 or mapped[:, 1].max() > ph - 1:
            return None
        matrices.append(matrix)
    return matrices


def _warp(image: np.ndarray, matrix: np.ndarray, height: int, width: int, nearest: bool = False) -> np.ndarray:
    flags = (cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR) | cv2.WARP_INVERSE_MAP
    return cv2.warpAffine(np.ascontiguousarray(image), matrix, (width, height), flags=flags,
                          borderMode=cv2.BORDER_REPLICATE)


def _coins_video(rng: np.random.Generator, name: str, height: int, width: int, frames: int) -> RealVideo:
    photo = photos.load_photo("coins")
    coins = coin_labels()
    for _attempt in range(500):
        path = _camera_path(rng, photo.shape[:2], height, width, frames, zoom_range=(1.1, 1.8), travel=0.15)
        if path is None:
            continue
        first = _warp(coins, path[0], height, width, nearest=True)
        ids, counts = np.unique(first[first > 0], return_counts=True)
        total = np.bincount(coins.reshape(-1), minlength=int(coins.max()) + 1)
        zoom2 = 1.0 / abs(np.linalg.det(path[0][:, :2]))                 # frame pixels per photograph pixel^2
        whole = [int(i) for i, n in zip(ids, counts) if n >= 0.95 * total[i] * zoom2]   # fully inside frame 0
        if not whole:
            continue
        chosen = [int(c) for c in rng.choice(whole, size=min(len(whole), int(rng.integers(1, 3))), replace=False)]
        lut = np.zeros(int(coins.max()) + 1, dtype=np.uint8)
        for new, old in enumerate(chosen, start=1):
            lut[old] = new
        gains = 1.0 + rng.uniform(-0.08, 0.08, size=3)
        images, labels = [], []
        for t, matrix in enumerate(path):
            gain = 1.0 + (gains - 1.0) * t / max(frames - 1, 1)
            images.append(np.clip(_warp(photo, matrix, height, width) * gain, 0, 255).astype(np.uint8))
            labels.append(lut[_warp(coins, matrix, height, width, nearest=True)])
        info = {"split": "real", "kind": "coins", "num_frames": frames, "photo": "coins", "background": "photo",
                "objects": {str(k): {"category": "coin", "texture": "photo", "appear_frame": 0}
                            for k in range(1, len(chosen) + 1)}}
        return RealVideo(name, "coins", images, labels, info)
    raise RuntimeError(f"could not place a camera path for {name} inside the coins photograph at {height}x{width}")


def _silhouette(rng: np.random.Generator, points: int = 96) -> np.ndarray:
    """(P, 2) a smooth random star-convex outline with the area of the unit disc."""
    phi = np.linspace(0, 2 * np.pi, points, endpoint=False)
    radius = np.ones_like(phi)
    for k in range(2, 6):
        radius += rng.uniform(0, 0.28 / k * 2) * np.cos(k * phi + rng.uniform(0, 2 * np.pi))
    radius = np.clip(radius, 0.35, None)
    outline = np.stack([radius * np.cos(phi), radius * np.sin(phi)], axis=1)
    x, y = outline[:, 0], outline[:, 1]
    area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
    return outline * np.sqrt(np.pi / area)


def _composite_video(rng: np.random.Generator, name: str, height: int, width: int, frames: int) -> RealVideo:
    photo = photos.load_photo("flower.jpg")
    ph, pw = photo.shape[:2]
    for _attempt in range(500):
        path = _camera_path(rng, (ph, pw), height, width, frames, zoom_range=(0.8, 1.3), travel=0.12)
        if path is not None:
            break
    else:
        raise RuntimeError(f"could not place a camera path for {name} inside flower.jpg at {height}x{width}")
    count = int(rng.integers(1, 3))
    objects = []
    for _ in range(count):
        radius = float(rng.uniform(0.18, 0.28)) * height
        outline = _silhouette(rng) * radius
        margin = radius * 1.1
        p0 = np.array([rng.uniform(margin, width - margin), rng.uniform(margin, height - margin)])
        for _try in range(50):                      # the end point: 0.1-0.25 of the width away, inside the frame
            heading = rng.uniform(0, 2 * np.pi)
            p1 = p0 + rng.uniform(0.1, 0.25) * width * np.array([np.cos(heading), np.sin(heading)])
            if margin <= p1[0] <= width - margin and margin <= p1[1] <= height - margin:
                break
        else:
            p1 = np.array([width - p0[0], height - p0[1]])
        scale1 = float(np.exp(rng.uniform(-0.3, 0.3)))
        angle0 = float(rng.uniform(0, 2 * np.pi))
        spin = float(rng.choice([-1.0, 1.0]) * rng.uniform(np.deg2rad(20), np.deg2rad(70)))
        size = int(np.ceil(2 * radius * max(1.0, scale1) * 1.8)) + 6
        zoom = float(rng.uniform(0.7, 1.3))                    # photograph pixels per tile pixel
        window = size * zoom
        # the cut-out comes from another region than where the background camera starts
        start = path[0] @ np.array([(width - 1) / 2, (height - 1) / 2, 1.0])
        for _try in range(50):
            cx, cy = rng.uniform(window / 2, pw - window / 2), rng.uniform(window / 2, ph - window / 2)
            if np.hypot(cx - start[0], cy - start[1]) > 0.35 * pw:
                break
        tile = cv2.getRectSubPix(np.asarray(photo), (int(np.ceil(window)), int(np.ceil(window))), (float(cx), float(cy)))
        tile = cv2.resize(tile, (size, size), interpolation=cv2.INTER_AREA)
        objects.append((outline, p0, p1, scale1, angle0, spin, tile, float(rng.random())))
    images, labels = [], []
    for t, matrix in enumerate(path):
        u = t / max(frames - 1, 1)
        image = _warp(photo, matrix, height, width).astype(np.float32)
        label = np.zeros((height, width), dtype=np.uint8)
        for object_id, (outline, p0, p1, scale1, angle0, spin, tile, _z) in sorted(
                enumerate(objects, start=1), key=lambda item: item[1][7]):
            ease = 0.5 - 0.5 * np.cos(np.pi * u)
            centre = p0 + (p1 - p0) * ease
            scale = scale1 ** u
            angle = angle0 + spin * u
            rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
            polygon = outline @ rot.T * scale + centre
            painted = paint_textured_polygon(image, polygon, tile, (centre[0], centre[1]), angle, scale)
            if painted is not None:
                (x0, y0, x1, y1), hard = painted
                label[y0:y1, x0:x1][hard] = object_id
        images.append(np.clip(image, 0, 255).astype(np.uint8))
        labels.append(label)
    info = {"split": "real", "kind": "composite", "num_frames": frames, "photo": "flower.jpg", "background": "photo",
            "objects": {str(k): {"category": "silhouette", "texture": "photo", "appear_frame": 0}
                        for k in range(1, count + 1)}}
    return RealVideo(name, "composite", images, labels, info)


def sample_real_video(seed: int, index: int, height: int = 160, width: int = 288, frames: int = REAL_FRAMES,
                      name: str | None = None) -> RealVideo:
    """Video ``index`` of the ``real`` split (kind :func:`real_video_kind`); a pure function of its arguments."""
    if frames < 2:
        raise ValueError(f"a real-split video needs at least 2 frames, got {frames}")
    if height < 32 or width < 32:
        raise ValueError(f"frame size {height}x{width} is too small; use at least 32x32")
    rng = np.random.default_rng([int(seed), _REAL_CODE, int(index)])
    name = name or f"real-{index:03d}"
    if real_video_kind(index) == "coins":
        return _coins_video(rng, name, height, width, frames)
    return _composite_video(rng, name, height, width, frames)
