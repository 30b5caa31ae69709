"""An unlimited stream of instance-segmentation images of the teaching world (its "COCO").

The IS branch (§3.1) is a Mask2Former trained on COCO: many still images with many instances
each. The teaching world's analogue is generated here, image by image, on the fly:

- every image is a textured background (:func:`~isvos_lite.data.shapes.render_background`) with
  ``min_instances``-``max_instances`` shapes of the world's categories, each rotated, stretched,
  wobbled (non-rigidly) and textured like the objects of the videos (textures warped with the object);
- ONE scale: images have the video frame size (160x288 by default) and objects the same pixel sizes
  as in the videos (radii 0.05-0.30 of the height here, videos use 0.13-0.22): no resizing to a
  fixed size, the only scale augmentation is ``scale_jitter`` (x0.8-1.25) in the training crop;
- hard cases on purpose: with ``same_texture_probability`` an instance copies the texture of an
  earlier one but gets another category (so the class must come from the silhouette, not the
  texture); with ``touch_probability`` an instance is placed touching or overlapping an earlier
  one (so instances must be separated, not just foreground found);
- z-order occlusion; labels are the hard polygon fill of what is visible, instances with fewer than
  ``min_visible_area`` visible pixels are dropped (ids stay contiguous 1..M);
- real photographs (off by default; the ``lite`` training recipe turns them on): with
  ``photo_texture_probability`` an instance's texture (shared with the instances that copy it) is a
  window of a training photograph (:mod:`isvos_lite.data.photos`), and with
  ``photo_background_probability`` the background is one. These draws use their own random stream,
  so the instances (shapes, poses, categories, labels) are those of the procedural image.

Everything is a pure function of ``(seed, index)`` via ``numpy.random.default_rng([seed, index])``.

Index streams (all disjoint, so on-the-fly training never sees an exported image)::

    [0, STREAM_SPAN)                         InstanceStreamDataset (on-the-fly training)
    EXPORT_TRAIN_OFFSET + i  (= 1e9 + i)     export_instance_coco, train image i
    EXPORT_VAL_OFFSET + i    (= 2e9 + i)     export_instance_coco, val image i (held out: same distribution)

Writing a COCO-format copy (:func:`export_instance_coco`) gives fixed train/val sets that every
COCO tool reads (pycocotools, :class:`~isvos_lite.data.instance_dataset.COCOInstanceDataset`, the
``instance-ap`` command).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from isvos_lite.data import augment as A
from isvos_lite.data.shapes import SHAPE_CATEGORIES, random_texture_spec, render_background, render_texture, unit_outline
from isvos_lite.data.world import paint_textured_polygon, polygon_roi

__all__ = [
    "InstanceStreamConfig",
    "InstanceSpec",
    "sample_instances",
    "render_instance_image",
    "InstanceStreamDataset",
    "export_instance_coco",
    "STREAM_SPAN",
    "EXPORT_TRAIN_OFFSET",
    "EXPORT_VAL_OFFSET",
]

STREAM_SPAN = 10**9                 # on-the-fly training indices: [0, STREAM_SPAN)
EXPORT_TRAIN_OFFSET = 10**9         # exported train image i = index EXPORT_TRAIN_OFFSET + i
EXPORT_VAL_OFFSET = 2 * 10**9       # exported val image i = index EXPORT_VAL_OFFSET + i


@dataclass
class InstanceStreamConfig:
    """The knobs of the instance stream (defaults: the video frame size and object sizes, one scale)."""
    height: int = 160
    width: int = 288
    crop_size: int = 160                  # square training crop (a multiple of 32)
    min_instances: int = 2
    max_instances: int = 8
    # instance radius (of the equal-area disc) as a fraction of the image height; log-uniform
    min_radius: float = 0.05
    max_radius: float = 0.30
    max_aspect: float = 1.45              # x/y stretch in [1/max_aspect, max_aspect]
    max_wobble: float = 0.12              # non-rigid radial wobble amplitude
    same_texture_probability: float = 0.35  # copy an earlier instance's texture (another category)
    touch_probability: float = 0.35       # place touching / overlapping an earlier instance
    lighting: float = 0.10                # per-channel gain amplitude of the whole image
    min_visible_area: int = 16            # px; smaller visible instances are dropped
    categories: tuple[str, ...] = SHAPE_CATEGORIES
    scale_jitter: tuple[float, float] = (0.8, 1.25)   # the only scale augmentation (training crop)
    photo_texture_probability: float = 0.0       # an instance's texture is a training-photograph window
    photo_background_probability: float = 0.0    # the background is a training-photograph window

    def __post_init__(self) -> None:
        self.categories = tuple(self.categories)
        self.scale_jitter = tuple(float(s) for s in self.scale_jitter)
        if self.height < 32 or self.width < 32:
            raise ValueError(f"image size {self.height}x{self.width} is too small; use at least 32x32")
        if self.crop_size < 32 or self.crop_size % 32:
            raise ValueError(f"crop_size must be a positive multiple of 32 (the model's stride), got {self.crop_size}")
        if not 1 <= self.min_instances <= self.max_instances <= 64:
            raise ValueError(f"need 1 <= min_instances <= max_instances <= 64, got {self.min_instances}, {self.max_instances}")
        if not 0 < self.min_radius <= self.max_radius <= 0.5:
            raise ValueError(f"need 0 < min_radius <= max_radius <= 0.5 (fractions of the height), "
                             f"got {self.min_radius}, {self.max_radius}")
        if self.max_aspect < 1:
            raise ValueError(f"max_aspect must be >= 1, got {self.max_aspect}")
        if not 0 <= self.max_wobble < 0.5:
            raise ValueError(f"max_wobble must be in [0, 0.5), got {self.max_wobble}")
        for name in ("same_texture_probability", "touch_probability", "photo_texture_probability",
                     "photo_background_probability"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be a probability in [0, 1], got {value}")
        if not 0 <= self.lighting < 1:
            raise ValueError(f"lighting must be in [0, 1), got {self.lighting}")
        if self.min_visible_area < 1:
            raise ValueError(f"min_visible_area must be >= 1 pixel, got {self.min_visible_area}")
        unknown = [c for c in self.categories if c not in SHAPE_CATEGORIES]
        if unknown or not self.categories:
            raise ValueError(f"categories must be a non-empty subset of {SHAPE_CATEGORIES}, got {self.categories}")
        if len(self.scale_jitter) != 2 or not 0 < self.scale_jitter[0] <= self.scale_jitter[1]:
            raise ValueError(f"scale_jitter must be (low, high) with 0 < low <= high, got {self.scale_jitter}")


@dataclass
class InstanceSpec:
    """One instance's look and pose, in image pixels."""
    category: str
    texture: object                       # shapes.TextureSpec (shared with the instance it copies, if any)
    radius: float
    aspect: float
    angle: float
    centre: tuple[float, float]           # (x, y)
    wobble_amp: float
    wobble_lobes: int
    wobble_phase: float
    z: float                              # drawing order: larger is in front
    texture_from: int | None = None       # index (in sampling order) of the instance whose texture it copies
    placed_near: int | None = None        # index of the instance it was placed touching / overlapping
    extra: dict = field(default_factory=dict)

    def outline(self) -> np.ndarray:
        """(P, 2) polygon in image pixels."""
        points = unit_outline(self.category)
        phi = np.arctan2(points[:, 1], points[:, 0])
        wobble = 1.0 + self.wobble_amp * np.sin(self.wobble_lobes * phi + self.wobble_phase)
        points = points * wobble[:, None] * np.array([np.sqrt(self.aspect), 1 / np.sqrt(self.aspect)])
        c, s = np.cos(self.angle), np.sin(self.angle)
        return points @ np.array([[c, -s], [s, c]]).T * self.radius + np.asarray(self.centre)


def sample_instances(config: InstanceStreamConfig, rng: np.random.Generator) -> list[InstanceSpec]:
    """The instances of one image, in sampling order (before occlusion)."""
    h, w = config.height, config.width
    count = int(rng.integers(config.min_instances, config.max_instances + 1))
    log_r = (np.log(config.min_radius * h), np.log(config.max_radius * h))
    specs: list[InstanceSpec] = []
    for i in range(count):
        radius = float(np.exp(rng.uniform(*log_r)))
        texture_from = None
        if i > 0 and rng.random() < config.same_texture_probability:
            texture_from = int(rng.integers(0, i))
            others = [c for c in config.categories if c != specs[texture_from].category] or list(config.categories)
            category = str(others[int(rng.integers(0, len(others)))])
            texture = specs[texture_from].texture
        else:
            category = str(config.categories[int(rng.integers(0, len(config.categories)))])
            texture = random_texture_spec(rng)
        placed_near = None
        if i > 0 and rng.random() < config.touch_probability:
            placed_near = int(rng.integers(0, i))
            other = specs[placed_near]
            heading = rng.uniform(0, 2 * np.pi)
            distance = (radius + other.radius) * rng.uniform(0.55, 1.05)   # overlapping .. just touching
            cx = other.centre[0] + distance * np.cos(heading)
            cy = other.centre[1] + distance * np.sin(heading)
            centre = (float(np.clip(cx, 0, w - 1)), float(np.clip(cy, 0, h - 1)))
        else:
            margin_x = min(0.3 * radius, 0.45 * w)
            margin_y = min(0.3 * radius, 0.45 * h)
            centre = (float(rng.uniform(margin_x, w - margin_x)), float(rng.uniform(margin_y, h - margin_y)))
        specs.append(InstanceSpec(
            category=category,
            texture=texture,
            radius=radius,
            aspect=float(np.exp(rng.uniform(-1, 1) * np.log(config.max_aspect))),
            angle=float(rng.uniform(0, 2 * np.pi)),
            centre=centre,
            wobble_amp=float(rng.uniform(0, config.max_wobble)),
            wobble_lobes=int(rng.integers(2, 5)),
            wobble_phase=float(rng.uniform(0, 2 * np.pi)),
            z=float(rng.random()),
            texture_from=texture_from,
            placed_near=placed_near,
        ))
    return specs


def render_instance_image(config: InstanceStreamConfig, seed: int, index: int, *, return_specs: bool = False):
    """One image of the stream; a pure function of ``(seed, index)``.

    Returns ``(image uint8 (H, W, 3) RGB, instance_ids uint8 (H, W) with 0 = background and 1..M the
    visible instances after occlusion, categories list[str] of length M: categories[k - 1] is id k's)``,
    plus the M :class:`InstanceSpec` of ids 1..M when ``return_specs``.
    """
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    rng = np.random.default_rng([int(seed), int(index)])
    h, w = config.height, config.width
    image = render_background(rng, h, w).astype(np.float32)
    specs = sample_instances(config, rng)
    gains = 1.0 + rng.uniform(-1, 1, size=3).astype(np.float32) * config.lighting
    if config.photo_texture_probability > 0 or config.photo_background_probability > 0:
        image = _dress_in_photos(config, specs, image, np.random.default_rng([int(seed), int(index), _PHOTO_STREAM]))
    order = sorted(range(len(specs)), key=lambda i: specs[i].z)
    raw = np.zeros((h, w), dtype=np.uint8)                  # 1 + sampling index, top-most wins
    textures: dict[int, np.ndarray] = {}                    # id(TextureSpec) -> largest tile rendered
    for i in order:
        spec = specs[i]
        polygon = spec.outline()
        if polygon_roi(polygon, h, w) is None:
            continue
        # the tile must cover the polygon (pixels of the ROI outside it are reflections under alpha = 0)
        reach = float(np.sqrt(((polygon - np.asarray(spec.centre)) ** 2).sum(axis=1).max()))
        size = 2 * int(np.ceil(reach)) + 6
        key = id(spec.texture)
        tile = textures.get(key)
        if tile is None or tile.shape[0] < size:
            tile = render_texture(spec.texture, size)
            textures[key] = tile
        (x0, y0, x1, y1), hard = paint_textured_polygon(image, polygon, tile, spec.centre, spec.angle)
        raw[y0:y1, x0:x1][hard] = i + 1
    image = np.clip(image * gains, 0, 255).astype(np.uint8)

    areas = np.bincount(raw.reshape(-1), minlength=len(specs) + 1)
    kept = [i for i in range(len(specs)) if areas[i + 1] >= config.min_visible_area]   # sampling order
    lut = np.zeros(len(specs) + 1, dtype=np.uint8)
    for new_id, i in enumerate(kept, start=1):
        lut[i + 1] = new_id
    instance_ids = lut[raw]
    categories = [specs[i].category for i in kept]
    if return_specs:
        return image, instance_ids, categories, [specs[i] for i in kept]
    return image, instance_ids, categories


_PHOTO_STREAM = 0x50484F54         # tag of the photograph draws' random stream ("PHOT")


def _dress_in_photos(config: InstanceStreamConfig, specs: list[InstanceSpec], background: np.ndarray,
                     rng: np.random.Generator) -> np.ndarray:
    """Swap textures (per distinct TextureSpec, so copies stay copies) and the background for photograph windows."""
    from isvos_lite.data.photos import photo_crop, random_photo_texture_spec

    dressed: dict[int, object] = {}
    for spec in specs:
        key = id(spec.texture)
        if key not in dressed:
            dressed[key] = (random_photo_texture_spec(rng) if rng.random() < config.photo_texture_probability
                            else spec.texture)
        spec.texture = dressed[key]
    if rng.random() < config.photo_background_probability:
        h, w = background.shape[:2]
        background = photo_crop(rng, h, w, max_rotation=0.35, scale_range=(0.5, 1.6)).astype(np.float32)
    return background


# --------------------------------------------------------------------------------------
# on-the-fly training dataset
# --------------------------------------------------------------------------------------

class InstanceStreamDataset(Dataset):
    """Instance-segmentation items rendered on the fly: a drop-in for :class:`COCOInstanceDataset`.

    Items have exactly the COCO dataset's format::

        {"image": float32 (3, crop, crop) in [0, 1], "masks": float32 (M, crop, crop) 0/1,
         "labels": int64 (M,) category index into ``category_names``,
         "info": {"image_id": index, "file_name": "stream/<seed>/<index>", "orig_size": (H, W), "category_ids": [..]}}

    ``index`` selects the image (stream indices ``[0, STREAM_SPAN)``, disjoint from the exported
    train/val images); the crop position, scale jitter and flip are drawn from
    :func:`~isvos_lite.data.vos_dataset.item_rng`, so the trainer's per-item torch seeding fixes them.
    Without ``augment`` the crop is the centre ``crop x crop`` window at scale 1, no flip.
    ``categories`` is the label space (default: all of ``SHAPE_CATEGORIES``, the model's 4 classes);
    it must hold every category of ``config.categories``.
    """

    def __init__(self, config: InstanceStreamConfig | None = None, seed: int = 0, length: int = 10**9, augment: bool = True,
                 categories=None, min_pixels: int = 4):
        self.config = config if config is not None else InstanceStreamConfig()
        if not 1 <= int(length) <= STREAM_SPAN:
            raise ValueError(f"length must be in [1, {STREAM_SPAN}] (the stream's index span), got {length}")
        self.seed = int(seed)
        self.length = int(length)
        self.augment = augment
        self.min_pixels = int(min_pixels)
        names = tuple(categories) if categories is not None else SHAPE_CATEGORIES
        missing = [c for c in self.config.categories if c not in names]
        if missing:
            raise ValueError(f"the stream draws categories {missing} that the label space {names} lacks")
        self.category_names: list[str] = list(names)
        self.category_ids: list[int] = [SHAPE_CATEGORIES.index(c) + 1 if c in SHAPE_CATEGORIES else i + 1
                                        for i, c in enumerate(names)]
        self.crop_size = (self.config.crop_size, self.config.crop_size)

    @property
    def num_classes(self) -> int:
        return len(self.category_names)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for an instance stream of length {self.length}")
        from isvos_lite.data.vos_dataset import item_rng   # lazy: keeps this module importable from export.py
        rng = item_rng()
        image, ids, categories = render_instance_image(self.config, self.seed, index)
        h, w = ids.shape
        out_hw = self.crop_size
        if self.augment:
            low, high = self.config.scale_jitter
            s = float(np.exp(rng.uniform(np.log(low), np.log(high))))
            new_h, new_w = h * s, w * s
            x0 = rng.uniform(min(0.0, out_hw[1] - new_w), max(0.0, out_hw[1] - new_w))
            y0 = rng.uniform(min(0.0, out_hw[0] - new_h), max(0.0, out_hw[0] - new_h))
        else:
            s = 1.0
            x0, y0 = (out_hw[1] - w) / 2, (out_hw[0] - h) / 2
        matrix = np.array([[s, 0, 0.5 * s - 0.5 + x0], [0, s, 0.5 * s - 0.5 + y0], [0, 0, 1]], dtype=np.float64)
        if self.augment and rng.random() < 0.5:
            matrix = A.hflip_matrix(out_hw[1]) @ matrix
        image = A.warp_image(image, matrix, out_hw, fill=(0, 0, 0))
        ids = A.warp_mask(ids, matrix, out_hw)
        masks, labels = [], []
        for k, category in enumerate(categories, start=1):
            mask = ids == k
            if int(mask.sum()) >= self.min_pixels:
                masks.append(mask)
                labels.append(self.category_names.index(category))
        mask_array = np.stack(masks).astype(np.float32) if masks else np.zeros((0,) + out_hw, np.float32)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1).astype(np.float32) / 255.0)),
            "masks": torch.from_numpy(mask_array),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "info": {"image_id": index, "file_name": f"stream/{self.seed}/{index}", "orig_size": (h, w),
                     "category_ids": [self.category_ids[c] for c in labels]},
        }


# --------------------------------------------------------------------------------------
# COCO export
# --------------------------------------------------------------------------------------

def export_instance_coco(out_dir: str | os.PathLike, seed: int, train_images: int, val_images: int,
                         config: InstanceStreamConfig | None = None, progress: bool = False, *, quality: int = 92) -> dict:
    """Write fixed train/val sets of the stream in COCO format; deterministic per seed (byte-identical JSON).

    Layout::

        out_dir/train/000000.jpg ...          full ``height x width`` images (JPEG, ``quality``)
        out_dir/val/000000.jpg ...
        out_dir/annotations/instances_train.json, instances_val.json

    Train image i is stream index ``EXPORT_TRAIN_OFFSET + i``, val image i ``EXPORT_VAL_OFFSET + i``:
    held-out images of the same distribution, disjoint from each other and from the on-the-fly
    training stream. Annotations: compressed RLE, ``category_id`` = index + 1 in ``SHAPE_CATEGORIES``
    (all four categories are listed, supercategory "shape"). Returns a summary of the counts.
    """
    from isvos_lite.atomic import atomic_write_text
    from isvos_lite.data.coco import mask_to_bbox, rle_encode
    from isvos_lite.data.palette import write_frame

    config = config if config is not None else InstanceStreamConfig()
    for name, value in (("train_images", train_images), ("val_images", val_images)):
        if int(value) < 0 or int(value) >= 10**9:
            raise ValueError(f"{name} must be in [0, 1e9), got {value}")
    out_dir = Path(out_dir)
    categories = [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(SHAPE_CATEGORIES)]
    config_info = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(config).items()
                   if not (k.startswith("photo_") and v == 0)}      # absent when unused (no photographs)
    summary: dict = {"out_dir": str(out_dir), "seed": int(seed)}
    start = time.perf_counter()
    for split, count, offset in (("train", int(train_images), EXPORT_TRAIN_OFFSET), ("val", int(val_images), EXPORT_VAL_OFFSET)):
        image_dir = out_dir / split
        image_dir.mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for i in range(count):
            image, ids, cats = render_instance_image(config, seed, offset + i)
            file_name = f"{i:06d}.jpg"
            write_frame(image_dir / file_name, image, quality=quality, atomic=False)
            image_id = i + 1
            images.append({"id": image_id, "file_name": file_name, "height": int(ids.shape[0]), "width": int(ids.shape[1]),
                           "stream_index": offset + i})
            for k, category in enumerate(cats, start=1):
                mask = ids == k
                annotations.append({
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": SHAPE_CATEGORIES.index(category) + 1,
                    "segmentation": rle_encode(mask),
                    "area": int(mask.sum()),
                    "bbox": mask_to_bbox(mask),
                    "iscrowd": 0,
                })
            if progress and ((i + 1) % 100 == 0 or i + 1 == count):
                print(f"\rinstance stream {split}: {i + 1}/{count} images", end="" if i + 1 < count else "\n",
                      file=sys.stderr, flush=True)
        data = {
            "info": {"description": "isvos-lite teaching world, instance stream (isvos_lite.data.instance_stream)",
                     "version": "1.0", "seed": int(seed), "split": split, "index_offset": offset, "config": config_info},
            "images": images,
            "annotations": annotations,
            "categories": categories,
        }
        atomic_write_text(out_dir / "annotations" / f"instances_{split}.json", json.dumps(data))
        summary[f"{split}_images"] = count
        summary[f"{split}_instances"] = len(annotations)
    summary["seconds"] = round(time.perf_counter() - start, 3)
    return summary
