"""The teaching world: procedural videos of textured shapes, with exact per-frame object masks.

Each video is a textured background seen by a slowly panning camera, with 1-5 objects of the
shape categories in :mod:`isvos_lite.data.shapes`. Objects translate, rotate, scale, deform
non-rigidly, touch and occlude each other (fixed z-order), may leave the frame and come back,
and the lighting drifts in colour. Four kinds of video are sampled:

``normal``     train / val (the same distribution, so a small CPU-trained model can learn it);
``lookalike``  a fair version of the paper's Fig. 1: one annotated target that changes scale,
               shape, pose and lighting a lot, and 1-3 *unannotated* look-alikes that wear the
               target's very texture (but another silhouette). They start apart and come close
               or cross later; only the target is labelled (look-alikes are background, 0);
``heldout``    what training never shows: held-out texture families, silhouettes and background
               kind, 1.6x faster motion and a moving spotlight;
``late``       the YouTube-VOS export: some objects first appear mid-video, at a labelled frame.

With ``photos=True`` (the ``trainphoto`` training videos) a ``normal`` or ``lookalike`` video is
dressed in real photographs (:mod:`isvos_lite.data.photos`, training photographs only): most
backgrounds become a window of a photograph and about half of the objects wear a photograph
window as their texture. Those draws come from their own random stream, so the shapes and motion
are those of the procedural video of the same ``(seed, kind, index)``.

Everything is a pure function of ``(seed, kind, index)`` through ``numpy.random.default_rng``,
so a world is reproducible object by object, whatever the number of videos asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from isvos_lite.data.shapes import (
    BACKGROUND_KINDS_HELDOUT,
    BACKGROUND_KINDS_TRAIN,
    HELDOUT_SHAPES,
    PHOTO_FAMILY,
    SHAPE_CATEGORIES,
    TEXTURE_FAMILIES_HELDOUT,
    TEXTURE_FAMILIES_TRAIN,
    TextureSpec,
    random_texture_spec,
    render_background,
    render_texture,
    unit_outline,
)

__all__ = ["WorldConfig", "ObjectSpec", "VideoSpec", "VIDEO_KINDS", "sample_video", "render_video", "render_frame", "lookalike_meeting",
           "render_labels"]

VIDEO_KINDS = ("normal", "lookalike", "heldout", "late")
_KIND_CODE = {"normal": 1, "lookalike": 2, "late": 3, "heldout": 4}

HELDOUT_SPEEDUP = 1.6          # heldout videos move this much faster than anything in training
LOOKALIKE_LIGHT = 0.25         # gain drift amplitude of lookalike videos (strong lighting change)
PHOTO_BACKGROUND_PROBABILITY = 0.7   # photos=True videos: chance the background is a photograph window
PHOTO_TEXTURE_PROBABILITY = 0.5      # photos=True videos: chance an object (and its look-alikes) wears a photograph


@dataclass
class WorldConfig:
    """The documented knobs of the teaching world (``isvos-lite toy-data --help`` exposes them).

    The default frame size, 160x288, is the one scale shared by training crops and inference: the
    model is trained and evaluated on frames of the same size, so no rescaling happens anywhere.
    """
    height: int = 160
    width: int = 288
    min_frames: int = 24               # training videos
    max_frames: int = 32
    eval_min_frames: int = 20          # val, lookalike and heldout videos: shorter, for cheap evaluation
    eval_max_frames: int = 24
    min_objects: int = 1
    max_objects: int = 5
    # object radius (of the equal-area disc), as a fraction of the frame height
    min_radius: float = 0.13
    max_radius: float = 0.22
    # motion per frame, as a fraction of the frame height ("moderate" by default)
    max_speed: float = 0.014
    max_spin_deg: float = 3.0          # rotation per frame, degrees
    leave_probability: float = 0.25    # chance an object may leave the frame and re-enter
    touch_probability: float = 0.3     # chance (normal videos) that object 2 starts touching object 1
    lighting_drift: float = 0.10       # amplitude of the per-channel gain drift
    camera_pan: float = 0.05           # camera pan amplitude, fraction of the frame height
    # minimum visible area of each object when it is first given (frame 0, or its first frame)
    min_visible_area: float = 0.02
    categories: tuple[str, ...] = SHAPE_CATEGORIES

    def __post_init__(self) -> None:
        self.categories = tuple(self.categories)
        if self.height < 32 or self.width < 32:
            raise ValueError(f"frame size {self.height}x{self.width} is too small; use at least 32x32")
        if not 2 <= self.min_frames <= self.max_frames:
            raise ValueError(f"need 2 <= min_frames <= max_frames, got {self.min_frames}, {self.max_frames}")
        if not 2 <= self.eval_min_frames <= self.eval_max_frames:
            raise ValueError(f"need 2 <= eval_min_frames <= eval_max_frames, got {self.eval_min_frames}, "
                             f"{self.eval_max_frames}")
        if not 1 <= self.min_objects <= self.max_objects <= 10:
            raise ValueError(f"need 1 <= min_objects <= max_objects <= 10, got {self.min_objects}, {self.max_objects}")
        if not 0 < self.min_radius <= self.max_radius < 0.5:
            raise ValueError(f"need 0 < min_radius <= max_radius < 0.5, got {self.min_radius}, {self.max_radius}")
        if not 0 <= self.touch_probability <= 1:
            raise ValueError(f"touch_probability must be in [0, 1], got {self.touch_probability}")
        unknown = [c for c in self.categories if c not in SHAPE_CATEGORIES]
        if unknown or not self.categories:
            raise ValueError(f"categories must be a non-empty subset of {SHAPE_CATEGORIES}, got {self.categories}")


@dataclass
class ObjectSpec:
    """One object's look and motion; positions are in pixels of the frame."""
    object_id: int
    category: str
    texture: TextureSpec
    radius: float                   # px, equal-area disc radius at scale 1
    aspect: float                   # x/y stretch
    position0: tuple[float, float]  # (x, y) at t = 0
    velocity: tuple[float, float]   # px per frame
    sway: tuple[float, float, float]  # (amplitude px, angular frequency, phase): a curved path
    bounds_margin: float            # px beyond the frame edge the centre may go (large: leaves the frame)
    angle0: float                   # radians
    spin: float                     # radians per frame
    scale_amp: float
    scale_freq: float
    wobble_amp: float               # non-rigid radial wobble
    wobble_lobes: int
    wobble_freq: float
    z: float                        # drawing order: larger is in front
    appear_frame: int = 0
    straight: bool = False          # no bouncing: a straight pass (look-alike approaches)
    annotated: bool = True          # False: drawn, but labelled background (0) in every label map

    def pose(self, t: int, height: int, width: int) -> tuple[np.ndarray, float, float]:
        """Centre (x, y), rotation angle and scale at frame t."""
        amp, freq, phase = self.sway
        direction = np.array(self.velocity) / (np.linalg.norm(self.velocity) + 1e-9)
        normal = np.array([-direction[1], direction[0]])
        raw = np.array(self.position0) + np.array(self.velocity) * t + normal * amp * (np.sin(freq * t + phase) - np.sin(phase))
        if self.straight:
            centre = raw
        else:
            centre = np.array([
                _fold(raw[0], -self.bounds_margin, width + self.bounds_margin),
                _fold(raw[1], -self.bounds_margin, height + self.bounds_margin),
            ])
        angle = self.angle0 + self.spin * t
        scale = 1.0 + self.scale_amp * np.sin(self.scale_freq * t)
        return centre, angle, scale

    def outline(self, t: int, height: int, width: int) -> np.ndarray:
        """(P, 2) polygon in frame pixels at frame t: category outline, stretched, wobbled, rotated, moved."""
        centre, angle, scale = self.pose(t, height, width)
        points = unit_outline(self.category)                                 # (P, 2), area pi
        phi = np.arctan2(points[:, 1], points[:, 0])
        wobble = 1.0 + self.wobble_amp * np.sin(self.wobble_lobes * phi + self.wobble_freq * t)
        aspect_t = self.aspect * (1.0 + 0.5 * self.wobble_amp * np.sin(0.7 * self.wobble_freq * t + 1.0))
        points = points * wobble[:, None] * np.array([np.sqrt(aspect_t), 1 / np.sqrt(aspect_t)])
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        return points @ rot.T * (self.radius * scale) + centre


@dataclass
class VideoSpec:
    name: str
    kind: str
    num_frames: int
    height: int
    width: int
    objects: list[ObjectSpec]
    background_seed: int
    pan: tuple[float, float, float, float]      # (amp_x, amp_y, freq, phase)
    light: tuple[tuple[float, float, float], float, float] = field(default=((0.0, 0.0, 0.0), 0.05, 0.0))
    # (per-channel gain amplitudes, angular frequency, phase)
    background_kind: str = "field"               # see shapes.render_background; "photo": a photograph window
    background_families: tuple[str, ...] = TEXTURE_FAMILIES_TRAIN
    # heldout only: a moving spotlight (x0, y0, vx, vy in px / frame, sigma px, strength in [0, 1]); None: none
    spotlight: tuple[float, float, float, float, float, float] | None = None

    @property
    def annotated_objects(self) -> list[ObjectSpec]:
        """The objects that have an id in the label maps (look-alikes are not among them)."""
        return [o for o in self.objects if o.annotated]


def _fold(value: float, low: float, high: float) -> float:
    """Reflect a coordinate into [low, high] (a ball bouncing between walls)."""
    span = high - low
    if span <= 0:
        return (low + high) / 2
    offset = (value - low) % (2 * span)
    return low + (offset if offset <= span else 2 * span - offset)


# --------------------------------------------------------------------------------------
# sampling a video
# --------------------------------------------------------------------------------------

def _sample_object(rng: np.random.Generator, config: WorldConfig, object_id: int, kind: str) -> ObjectSpec:
    h, w = config.height, config.width
    radius = rng.uniform(config.min_radius, config.max_radius) * h
    speed = rng.uniform(0.3, 1.0) * config.max_speed * h * (HELDOUT_SPEEDUP if kind == "heldout" else 1.0)
    heading = rng.uniform(0, 2 * np.pi)
    leaves = rng.random() < config.leave_probability and kind != "lookalike"
    strong_change = kind == "lookalike"
    heldout = kind == "heldout"
    categories = HELDOUT_SHAPES if heldout else config.categories
    return ObjectSpec(
        object_id=object_id,
        category=str(categories[int(rng.integers(0, len(categories)))]),
        texture=random_texture_spec(rng, TEXTURE_FAMILIES_HELDOUT if heldout else TEXTURE_FAMILIES_TRAIN),
        radius=radius,
        aspect=float(np.exp(rng.uniform(-0.3, 0.3))),
        position0=(rng.uniform(radius * 0.8, w - radius * 0.8), rng.uniform(radius * 0.8, h - radius * 0.8)),
        velocity=(speed * np.cos(heading), speed * np.sin(heading)),
        sway=(rng.uniform(0, 0.15) * h, rng.uniform(0.05, 0.2), rng.uniform(0, 2 * np.pi)),
        bounds_margin=radius * 1.3 if leaves else -radius * 0.6,
        angle0=rng.uniform(0, 2 * np.pi),
        spin=np.deg2rad(rng.uniform(-1, 1) * config.max_spin_deg * (2.0 if strong_change else 1.0)
                        * (HELDOUT_SPEEDUP if heldout else 1.0)),
        scale_amp=rng.uniform(0.3, 0.45) if strong_change else rng.uniform(0.0, 0.15),
        scale_freq=rng.uniform(0.05, 0.15),
        wobble_amp=rng.uniform(0.12, 0.25) if strong_change else rng.uniform(0.0, 0.08),
        wobble_lobes=int(rng.integers(2, 5)),
        wobble_freq=rng.uniform(0.1, 0.3),
        z=float(rng.random()),
    )


def _object_mask(obj: ObjectSpec, t: int, height: int, width: int) -> np.ndarray:
    """(H, W) bool: the pixels object ``obj`` covers at frame t (ignoring occlusion)."""
    mask = np.zeros((height, width), dtype=bool)
    polygon = obj.outline(t, height, width)
    roi = polygon_roi(polygon, height, width)
    if roi is not None:
        x0, y0, x1, y1 = roi
        mask[y0:y1, x0:x1] = fill_polygon(polygon, roi, antialiased=False) > 0
    return mask


def _visible_areas(spec: VideoSpec, t: int) -> dict[int, int]:
    """Visible pixels of every annotated object at frame t."""
    labels = render_labels(spec, t)
    counts = np.bincount(labels.reshape(-1), minlength=max(o.object_id for o in spec.objects) + 1)
    return {obj.object_id: int(counts[obj.object_id]) for obj in spec.annotated_objects}


def _place_touching(rng: np.random.Generator, config: WorldConfig, anchor: ObjectSpec, obj: ObjectSpec) -> None:
    """Move ``obj`` at frame 0 so that it touches or slightly overlaps ``anchor`` (normal videos)."""
    h, w = config.height, config.width
    centre, _, _ = anchor.pose(0, h, w)
    direction = rng.uniform(0, 2 * np.pi)
    distance = rng.uniform(0.85, 1.05) * (anchor.radius + obj.radius)
    x = float(np.clip(centre[0] + distance * np.cos(direction), obj.radius * 0.8, w - obj.radius * 0.8))
    y = float(np.clip(centre[1] + distance * np.sin(direction), obj.radius * 0.8, h - obj.radius * 0.8))
    obj.position0 = (x, y)


def _lookalike(rng: np.random.Generator, config: WorldConfig, target: ObjectSpec, object_id: int,
               num_frames: int) -> ObjectSpec | None:
    """A look-alike of ``target``: its very TextureSpec, another silhouette, its own aspect and size.

    It starts apart from the target (centre distance >= 1.3 x (r_target + r_lookalike), no pixel
    overlap at frame 0) and moves on a straight line to a meeting point near the target's centre at
    a frame in [T/3, 3T/4], where their centre distance is <= 0.5 x (r_t + r_l) (they cross).
    Returns None when no such start point is found (the caller resamples).
    """
    h, w = config.height, config.width
    others = [c for c in config.categories if c != target.category]
    if not others:
        raise ValueError(f"look-alike videos need at least 2 categories (a look-alike wears another silhouette than "
                         f"its target); WorldConfig.categories is {config.categories}")
    radius = target.radius * rng.uniform(0.85, 1.15)
    reach = target.radius + radius
    t_meet = int(rng.integers(int(np.ceil(num_frames / 3)), max(int(np.ceil(num_frames / 3)) + 1, (3 * num_frames) // 4 + 1)))
    meet_centre, _, _ = target.pose(t_meet, h, w)
    offset_angle = rng.uniform(0, 2 * np.pi)
    meet = meet_centre + rng.uniform(0, 0.4) * reach * np.array([np.cos(offset_angle), np.sin(offset_angle)])
    target0, _, _ = target.pose(0, h, w)
    start = None
    for _ in range(40):   # a start point inside the frame, well apart from the target
        candidate = np.array([rng.uniform(radius * 0.8, w - radius * 0.8), rng.uniform(radius * 0.8, h - radius * 0.8)])
        if np.linalg.norm(candidate - target0) >= 1.4 * reach:
            start = candidate
            break
    if start is None:
        return None
    velocity = (meet - start) / max(t_meet, 1)
    return ObjectSpec(
        object_id=object_id,
        category=str(others[int(rng.integers(0, len(others)))]),
        texture=target.texture,
        radius=radius,
        aspect=float(np.exp(rng.uniform(-0.3, 0.3))),
        position0=(float(start[0]), float(start[1])),
        velocity=(float(velocity[0]), float(velocity[1])),
        sway=(0.0, 0.1, 0.0),
        bounds_margin=0.0,
        angle0=rng.uniform(0, 2 * np.pi),
        spin=np.deg2rad(rng.uniform(-1, 1) * config.max_spin_deg),
        scale_amp=rng.uniform(0.0, 0.15),
        scale_freq=rng.uniform(0.05, 0.15),
        wobble_amp=rng.uniform(0.0, 0.08),
        wobble_lobes=int(rng.integers(2, 5)),
        wobble_freq=rng.uniform(0.1, 0.3),
        z=float(rng.random()),
        straight=True,
        annotated=False,
    )


def lookalike_meeting(spec: VideoSpec, lookalike: ObjectSpec) -> tuple[float, float]:
    """(centre distance at frame 0, smallest centre distance over frames [T/3, 3T/4]), in units of r_t + r_l."""
    target = spec.objects[0]
    reach = target.radius + lookalike.radius
    h, w = spec.height, spec.width

    def distance(t: int) -> float:
        return float(np.linalg.norm(target.pose(t, h, w)[0] - lookalike.pose(t, h, w)[0])) / reach

    t0, t1 = int(np.ceil(spec.num_frames / 3)), (3 * spec.num_frames) // 4
    return distance(0), min(distance(t) for t in range(t0, max(t0, t1) + 1))


def sample_video(config: WorldConfig, seed: int, kind: str, index: int, name: str | None = None,
                 num_frames: int | None = None, evaluation: bool = False, photos: bool = False) -> VideoSpec:
    """Sample one video's specification; deterministic in (seed, kind, index).

    ``evaluation`` picks the shorter evaluation length (``eval_min_frames``..``eval_max_frames``,
    used by the val, lookalike and heldout splits) instead of the training length.
    Every annotated object is visible with at least ``min_visible_area`` of the frame when it is
    first given (frame 0, or its appear frame for ``late`` videos), as DAVIS semi-supervised
    evaluation requires (ids 1..N all present in the first frame).
    ``photos`` dresses the video in training photographs (see the module docstring; ``normal`` and
    ``lookalike`` videos only); it changes no shape, motion or label of the video.
    """
    if photos and kind not in ("normal", "lookalike"):
        raise ValueError(f"photos=True is for normal and lookalike videos, got kind {kind!r}")
    if kind not in VIDEO_KINDS:
        raise ValueError(f"unknown video kind {kind!r}; choose one of {VIDEO_KINDS}")
    rng = np.random.default_rng([seed, _KIND_CODE[kind], index])
    h, w = config.height, config.width
    min_area = config.min_visible_area * h * w
    name = name or f"{kind}-{index:03d}"
    low, high = (config.eval_min_frames, config.eval_max_frames) if evaluation else (config.min_frames, config.max_frames)
    for _attempt in range(300):
        frames = num_frames or int(rng.integers(low, high + 1))
        if kind == "lookalike":
            target = _sample_object(rng, config, 1, kind)
            n_alike = int(rng.integers(1, 4))
            objects = [target] + [_lookalike(rng, config, target, 2 + i, frames) for i in range(n_alike)]
            if any(o is None for o in objects):
                continue
        else:
            count = int(rng.integers(config.min_objects, config.max_objects + 1))
            objects = [_sample_object(rng, config, i + 1, kind) for i in range(count)]
            if kind == "normal" and count > 1 and rng.random() < config.touch_probability:
                _place_touching(rng, config, objects[0], objects[1])
            if kind == "late" and count > 1:
                labelled = list(range(5, max(6, frames // 2), 5))
                for obj in objects[1:]:
                    if labelled and rng.random() < 0.6:
                        obj.appear_frame = int(rng.choice(labelled))
        if kind == "lookalike":    # a strong lighting change over the video
            gains = tuple(float(g) for g in rng.choice([-1.0, 1.0], size=3) * rng.uniform(0.6, 1.0, size=3) * LOOKALIKE_LIGHT)
        else:
            gains = tuple(float(g) for g in rng.uniform(-1, 1, size=3) * config.lighting_drift)
        heldout = kind == "heldout"
        background_kinds = BACKGROUND_KINDS_HELDOUT if heldout else BACKGROUND_KINDS_TRAIN
        spotlight = None
        if heldout:   # a spotlight sweeping across the frame (training lighting is only a global gain)
            speed = rng.uniform(0.5, 1.0) * config.max_speed * h * HELDOUT_SPEEDUP
            heading = rng.uniform(0, 2 * np.pi)
            spotlight = (float(rng.uniform(0.2, 0.8) * w), float(rng.uniform(0.2, 0.8) * h),
                         float(speed * np.cos(heading)), float(speed * np.sin(heading)),
                         float(rng.uniform(0.35, 0.6) * h), float(rng.uniform(0.35, 0.55)))
        spec = VideoSpec(
            name=name, kind=kind, num_frames=frames, height=h, width=w, objects=objects,
            background_seed=int(rng.integers(0, 2**31 - 1)),
            pan=(rng.uniform(-1, 1) * config.camera_pan * h, rng.uniform(-1, 1) * config.camera_pan * h,
                 rng.uniform(0.03, 0.1), rng.uniform(0, 2 * np.pi)),
            light=(gains, float(rng.uniform(0.05, 0.15)), float(rng.uniform(0, 2 * np.pi))),
            background_kind=str(background_kinds[int(rng.integers(0, len(background_kinds)))]),
            background_families=TEXTURE_FAMILIES_HELDOUT if heldout else TEXTURE_FAMILIES_TRAIN,
            spotlight=spotlight,
        )
        if kind == "lookalike" and not _lookalikes_are_fair(spec):
            continue
        ok = True
        for obj in spec.annotated_objects:
            area = _visible_areas(spec, obj.appear_frame)[obj.object_id]
            if area < min(min_area, 0.5 * np.pi * obj.radius**2):
                ok = False
                break
        if ok:
            if photos:
                _dress_in_photos(spec, np.random.default_rng([seed, _KIND_CODE[kind], index, 1]))
            return spec
    raise RuntimeError(f"could not place the objects of video {name} visibly; use fewer or smaller objects")


def _dress_in_photos(spec: VideoSpec, rng: np.random.Generator) -> None:
    """Give a sampled video photograph textures and / or a photograph background (labels do not change).

    Look-alikes keep wearing their target's texture (they share its TextureSpec). At least one
    photograph is always used.
    """
    from isvos_lite.data.photos import random_photo_texture_spec

    photo_background = bool(rng.random() < PHOTO_BACKGROUND_PROBABILITY)
    dressed: dict[int, object] = {}                          # id(old TextureSpec) -> photo TextureSpec
    for obj in spec.objects:
        key = id(obj.texture)
        if key not in dressed:
            dressed[key] = random_photo_texture_spec(rng) if rng.random() < PHOTO_TEXTURE_PROBABILITY else None
        if dressed[key] is not None:
            obj.texture = dressed[key]
    if photo_background or all(v is None for v in dressed.values()):
        spec.background_kind = PHOTO_FAMILY


def _lookalikes_are_fair(spec: VideoSpec) -> bool:
    """Look-alikes start apart (no overlap with the target at frame 0) and come close later."""
    target = spec.objects[0]
    target_mask = _object_mask(target, 0, spec.height, spec.width)
    for obj in spec.objects[1:]:
        start, closest = lookalike_meeting(spec, obj)
        if start < 1.3 or closest > 0.8:
            return False
        if np.any(target_mask & _object_mask(obj, 0, spec.height, spec.width)):
            return False
    return True


# --------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------

def polygon_roi(polygon: np.ndarray, height: int, width: int) -> tuple[int, int, int, int] | None:
    """The (x0, y0, x1, y1) pixel box around a (P, 2) polygon, clipped to the frame; None when it is outside."""
    x0 = max(int(np.floor(polygon[:, 0].min())) - 1, 0)
    y0 = max(int(np.floor(polygon[:, 1].min())) - 1, 0)
    x1 = min(int(np.ceil(polygon[:, 0].max())) + 2, width)
    y1 = min(int(np.ceil(polygon[:, 1].max())) + 2, height)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def fill_polygon(polygon: np.ndarray, roi, antialiased: bool) -> np.ndarray:
    """(y1 - y0, x1 - x0) uint8 mask of the polygon inside ``roi`` (255 inside; anti-aliased edges if asked)."""
    x0, y0, x1, y1 = roi
    canvas = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    pts = np.round((polygon - [x0, y0]) * 16).astype(np.int32)[None]      # 4 fractional bits
    cv2.fillPoly(canvas, pts, 255, lineType=cv2.LINE_AA if antialiased else cv2.LINE_8, shift=4)
    return canvas


def paint_textured_polygon(image: np.ndarray, polygon: np.ndarray, tile: np.ndarray, centre: tuple[float, float],
                           angle: float, scale: float = 1.0) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
    """Draw one object in place: ``tile`` (S, S, 3), rotated by ``angle`` and scaled about its own centre, moved to
    ``centre`` (x, y), alpha-blended into ``image`` (H, W, 3) float32 inside the anti-aliased ``polygon``.

    Returns (roi, hard) — the ROI box and the (y1 - y0, x1 - x0) bool hard mask for the label map — or None when the
    polygon lies outside the frame.
    """
    roi = polygon_roi(polygon, image.shape[0], image.shape[1])
    if roi is None:
        return None
    x0, y0, x1, y1 = roi
    hard = fill_polygon(polygon, roi, antialiased=False) > 0
    alpha = fill_polygon(polygon, roi, antialiased=True).astype(np.float32)[..., None] / 255.0
    mid = (tile.shape[0] - 1) / 2
    # tile -> frame: rotate and scale about the tile centre, move to the object centre (ROI coordinates)
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    tx = centre[0] - x0 - (c * mid - s * mid)
    ty = centre[1] - y0 - (s * mid + c * mid)
    warp = np.array([[c, -s, tx], [s, c, ty]], dtype=np.float32)
    patch = cv2.warpAffine(tile, warp, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT).astype(np.float32)
    region = image[y0:y1, x0:x1]
    image[y0:y1, x0:x1] = region * (1 - alpha) + patch * alpha
    return roi, hard


def render_labels(spec: VideoSpec, t: int) -> np.ndarray:
    """(H, W) uint8 object ids at frame t (the top-most object wins; unannotated objects write 0)."""
    labels = np.zeros((spec.height, spec.width), dtype=np.uint8)
    for obj in sorted(spec.objects, key=lambda o: o.z):
        if t < obj.appear_frame:
            continue
        polygon = obj.outline(t, spec.height, spec.width)
        roi = polygon_roi(polygon, spec.height, spec.width)
        if roi is None:
            continue
        x0, y0, x1, y1 = roi
        hard = fill_polygon(polygon, roi, antialiased=False) > 0
        labels[y0:y1, x0:x1][hard] = obj.object_id if obj.annotated else 0
    return labels


class _VideoRenderer:
    """Caches the background canvas and object textures of one video."""

    def __init__(self, spec: VideoSpec):
        self.spec = spec
        pad = int(np.ceil(max(abs(spec.pan[0]), abs(spec.pan[1])))) + 2
        self.pad = pad
        bg_rng = np.random.default_rng(spec.background_seed)
        if spec.background_kind == PHOTO_FAMILY:      # a near-upright window of a training photograph
            from isvos_lite.data.photos import photo_crop
            self.background = photo_crop(bg_rng, spec.height + 2 * pad, spec.width + 2 * pad, max_rotation=0.35,
                                         scale_range=(0.5, 1.6))
        else:
            self.background = render_background(bg_rng, spec.height + 2 * pad, spec.width + 2 * pad,
                                                families=spec.background_families, kind=spec.background_kind)
        self.textures: dict[int, tuple[np.ndarray, float]] = {}
        for obj in spec.objects:
            size = int(np.ceil(obj.radius * 2 * 1.6 * 1.5)) + 4
            self.textures[obj.object_id] = (render_texture(obj.texture, size), (size - 1) / 2)
        self.grid = None
        if spec.spotlight is not None:
            yy, xx = np.mgrid[0:spec.height, 0:spec.width].astype(np.float32)
            self.grid = (xx, yy)

    def frame(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """(H, W, 3) uint8 RGB frame and (H, W) uint8 label map at time t."""
        spec = self.spec
        h, w = spec.height, spec.width
        ax, ay, freq, phase = spec.pan
        ox = int(round(self.pad + ax * np.sin(freq * t + phase)))
        oy = int(round(self.pad + ay * np.cos(freq * t + phase)))
        image = self.background[oy:oy + h, ox:ox + w].astype(np.float32)          # (H, W, 3)
        labels = np.zeros((h, w), dtype=np.uint8)
        for obj in sorted(spec.objects, key=lambda o: o.z):
            if t < obj.appear_frame:
                continue
            texture, _ = self.textures[obj.object_id]
            pos, angle, scale = obj.pose(t, h, w)
            painted = paint_textured_polygon(image, obj.outline(t, h, w), texture, (pos[0], pos[1]), angle, scale)
            if painted is None:
                continue
            (x0, y0, x1, y1), hard = painted
            labels[y0:y1, x0:x1][hard] = obj.object_id if obj.annotated else 0   # look-alikes are background
        gains, light_freq, light_phase = spec.light
        gain = 1.0 + np.array(gains, dtype=np.float32) * np.sin(light_freq * t + light_phase)
        image = image * gain
        if spec.spotlight is not None:
            x0, y0, vx, vy, sigma, strength = spec.spotlight
            cx = _fold(x0 + vx * t, 0, w)
            cy = _fold(y0 + vy * t, 0, h)
            xx, yy = self.grid
            light = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))         # (H, W) in (0, 1]
            image = image * ((1 - strength) + strength * 1.25 * light)[..., None]
        return np.clip(image, 0, 255).astype(np.uint8), labels


def render_video(spec: VideoSpec):
    """Yield (frame uint8 (H, W, 3), labels uint8 (H, W)) for every frame of the video."""
    renderer = _VideoRenderer(spec)
    for t in range(spec.num_frames):
        yield renderer.frame(t)


def render_frame(spec: VideoSpec, t: int) -> tuple[np.ndarray, np.ndarray]:
    """One frame of a video (for notebooks); rendering whole videos is faster with render_video."""
    return _VideoRenderer(spec).frame(t)
