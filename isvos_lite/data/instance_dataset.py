"""COCO-format instance segmentation for the IS branch (§3.1, Mask2Former training data).

One item::

    {"image":  float32 (3, H, W) in [0, 1],
     "masks":  float32 (M, H, W) 0/1, one per instance (M may be 0 after a crop),
     "labels": int64 (M,) category index 0..K-1 (contiguous; COCO ids can have gaps),
     "info":   {"image_id": int, "file_name": str, "orig_size": (h, w), "category_ids": [COCO ids]}}

``num_classes`` (K) and ``category_names`` describe the label space; the teaching world's
instances JSON has the four shape categories of ``ModelConfig('lite').num_classes``.
Augmentation (training): horizontal flip and a large-scale-jitter style resize (fit into the
crop, x0.5-1.5) + random crop/pad to ``crop_size``; masks follow with nearest interpolation.
Batches: :func:`collate_instances` stacks images and keeps a list of per-image targets.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from isvos_lite.data import augment as A
from isvos_lite.data.coco import annotation_to_mask, load_coco_json
from isvos_lite.data.palette import read_frame
from isvos_lite.data.vos_dataset import item_rng

__all__ = ["COCOInstanceDataset", "collate_instances"]


class COCOInstanceDataset(Dataset):
    """Images and instance masks of a COCO ``instances_*.json``; see the module docstring."""

    def __init__(self, image_root: str | os.PathLike, annotation_file: str | os.PathLike, *, crop_size=None,
                 augment: bool = True, scale_range: tuple[float, float] = (0.5, 1.5), min_pixels: int = 4,
                 skip_empty: bool = True, include_crowd: bool = False):
        self.image_root = Path(image_root)
        if not self.image_root.is_dir():
            raise FileNotFoundError(f"COCO image folder {self.image_root} does not exist; for the teaching world it is DIR/coco/train")
        self.annotation_file = Path(annotation_file)
        data = load_coco_json(self.annotation_file)
        self.crop_size = A.as_size(crop_size)
        self.augment = augment
        self.scale_range = scale_range
        self.min_pixels = min_pixels
        categories = sorted(data["categories"], key=lambda c: c["id"])
        self.category_ids: list[int] = [int(c["id"]) for c in categories]          # index -> COCO id
        self.category_names: list[str] = [str(c["name"]) for c in categories]
        self._index_of_category = {cid: i for i, cid in enumerate(self.category_ids)}
        by_image: dict[int, list[dict]] = {}
        for ann in data["annotations"]:
            if ann.get("iscrowd", 0) and not include_crowd:
                continue
            if ann["category_id"] not in self._index_of_category:
                raise ValueError(f"{self.annotation_file}: annotation {ann.get('id')} has category_id {ann['category_id']} "
                                 "which is not in 'categories'")
            by_image.setdefault(int(ann["image_id"]), []).append(ann)
        self.images = [img for img in sorted(data["images"], key=lambda i: i["id"])
                       if not skip_empty or by_image.get(int(img["id"]))]
        self.annotations = by_image
        if not self.images:
            raise ValueError(f"{self.annotation_file} has no image with instances")

    @property
    def num_classes(self) -> int:
        return len(self.category_ids)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        rng = item_rng()
        record = self.images[index]
        path = self.image_root / record["file_name"]
        image = read_frame(path)
        h, w = image.shape[:2]
        if (h, w) != (int(record["height"]), int(record["width"])):
            raise ValueError(f"image {path} is {w}x{h} but {self.annotation_file} says "
                             f"{record['width']}x{record['height']}; the annotations belong to another version of the image")
        anns = self.annotations.get(int(record["id"]), [])
        masks = [annotation_to_mask(a, h, w) for a in anns]                  # M x (H, W)
        labels = [self._index_of_category[int(a["category_id"])] for a in anns]

        out_hw = self.crop_size or (h, w)
        if self.crop_size is not None:
            if self.augment:
                matrix = A.random_scale_crop_matrix(rng, (h, w), out_hw, self.scale_range)
            else:   # fit inside the crop, pad bottom/right
                fit = min(out_hw[0] / h, out_hw[1] / w)
                matrix = np.array([[fit, 0, 0.5 * fit - 0.5], [0, fit, 0.5 * fit - 0.5], [0, 0, 1]])
        else:
            matrix = np.eye(3)
        if self.augment and rng.random() < 0.5:
            matrix = A.hflip_matrix(out_hw[1]) @ matrix
        image = A.warp_image(image, matrix, out_hw, fill=(0, 0, 0))
        masks = [A.warp_mask(m, matrix, out_hw) for m in masks]
        keep = [i for i, m in enumerate(masks) if int(m.sum()) >= self.min_pixels]
        mask_array = np.stack([masks[i] for i in keep]).astype(np.float32) if keep else np.zeros((0,) + out_hw, np.float32)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1).astype(np.float32) / 255.0)),
            "masks": torch.from_numpy(mask_array),
            "labels": torch.tensor([labels[i] for i in keep], dtype=torch.int64),
            "info": {"image_id": int(record["id"]), "file_name": str(record["file_name"]), "orig_size": (h, w),
                     "category_ids": [self.category_ids[labels[i]] for i in keep]},
        }


def collate_instances(batch: list[dict]) -> tuple[torch.Tensor, list[dict]]:
    """-> (images (B, 3, H, W), targets [{"masks": (M_b, H, W), "labels": (M_b,), "info": ...}]).

    Images of different sizes are zero-padded at the bottom/right to the largest (masks too).
    """
    if not batch:
        raise ValueError("collate_instances got an empty batch")
    height = max(item["image"].shape[1] for item in batch)
    width = max(item["image"].shape[2] for item in batch)
    images = torch.zeros(len(batch), 3, height, width)
    targets = []
    for b, item in enumerate(batch):
        _, h, w = item["image"].shape
        images[b, :, :h, :w] = item["image"]
        masks = torch.zeros(item["masks"].shape[0], height, width)
        masks[:, :h, :w] = item["masks"]
        targets.append({"masks": masks, "labels": item["labels"], "info": item["info"]})
    return images, targets
