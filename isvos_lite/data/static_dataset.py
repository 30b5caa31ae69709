"""Static-image pretraining: each image + mask becomes a 3-frame pseudo-clip (peers.md §2, "Stage 0").

STCN and XMem pretrain on saliency / few-shot datasets (DUTS, ECSSD, FSS-1000, HRSOD, BIG) by
deforming one image into a fake video. The recipe:

- clip-wide: random affine with scale 0.8-1.5 and a horizontal flip; ColorJitter(0.1, 0.05, 0.05, 0.05);
  grayscale with p = 0.05;
- per frame: affine ±20°, scale 0.9-1.1, shear 10 (fill = mean colour); resize the short side to the
  crop size and take a random crop; ColorJitter(0.1, 0.05, 0.05, 0); a thin-plate-spline warp with
  p = 0.33 (scale 0.02).

Masks get every geometric step with nearest interpolation. Items have exactly the layout of
:class:`~isvos_lite.data.vos_dataset.VOSClipDataset`, so one training loop serves both stages.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from isvos_lite.data import augment as A
from isvos_lite.data.palette import check_same_size, read_frame, read_mask
from isvos_lite.data.sequences import davis_sequences
from isvos_lite.data.vos_dataset import build_clip_sample, item_rng

__all__ = ["StaticClipDataset"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class StaticClipDataset(Dataset):
    """Pseudo-clips from (image, mask) pairs; build with ``from_folder`` / ``from_davis`` or give the pairs."""

    def __init__(self, pairs: list[tuple[str | os.PathLike, str | os.PathLike]], *, num_frames: int = 3,
                 max_objects: int = 1, crop_size=384, mask_mode: str = "binary", tps_probability: float = 0.33,
                 augment: bool = True, repeat: int = 1, min_object_pixels: int = 20,
                 scale_jitter: tuple[float, float] | None = None):
        if not pairs:
            raise ValueError("StaticClipDataset got no (image, mask) pairs; check the folder")
        if mask_mode not in ("binary", "ids"):
            raise ValueError(f"mask_mode must be 'binary' (saliency masks, > 127 = object) or 'ids' (palette ids), got {mask_mode!r}")
        if num_frames < 2:
            raise ValueError(f"num_frames must be >= 2, got {num_frames}")
        self.pairs = [(Path(i), Path(m)) for i, m in pairs]
        for image, mask in self.pairs:
            if not image.exists():
                raise FileNotFoundError(f"image {image} does not exist")
            if not mask.exists():
                raise FileNotFoundError(f"mask {mask} of image {image} does not exist; every image needs a mask")
        self.num_frames = num_frames
        self.max_objects = max_objects
        self.crop_size = A.as_size(crop_size)
        self.mask_mode = mask_mode
        self.tps_probability = tps_probability
        self.augment = augment
        self.repeat = repeat
        self.min_object_pixels = min_object_pixels
        # None: the references' recipe (affine 0.8-1.5x, short side resized to the crop); (lo, hi): one scale,
        # the image at its own resolution zoomed by lo..hi (the teaching world's frames already have the video size)
        self.scale_jitter = scale_jitter

    # constructors -----------------------------------------------------------------------
    @classmethod
    def from_folder(cls, images_dir: str | os.PathLike, masks_dir: str | os.PathLike | None = None, **kwargs) -> "StaticClipDataset":
        """Images (``*.jpg``) and masks (``*.png`` of the same stem) in one folder tree (STCN layout),
        or images in ``images_dir`` and masks in ``masks_dir`` (DUTS: DUTS-TR-Image / DUTS-TR-Mask)."""
        images_dir = Path(images_dir)
        if not images_dir.is_dir():
            raise FileNotFoundError(f"image folder {images_dir} does not exist")
        pairs = []
        if masks_dir is None:
            for image in sorted(images_dir.rglob("*")):
                if image.suffix.lower() in (".jpg", ".jpeg"):
                    mask = image.with_suffix(".png")
                    if not mask.exists():
                        raise FileNotFoundError(f"image {image} has no mask {mask}; put each mask next to its image with the same name")
                    pairs.append((image, mask))
        else:
            masks_dir = Path(masks_dir)
            if not masks_dir.is_dir():
                raise FileNotFoundError(f"mask folder {masks_dir} does not exist")
            for image in sorted(images_dir.iterdir()):
                if image.suffix.lower() in IMAGE_SUFFIXES:
                    mask = masks_dir / (image.stem + ".png")
                    if not mask.exists():
                        raise FileNotFoundError(f"image {image} has no mask {mask}; masks must be PNGs named like their images")
                    pairs.append((image, mask))
        if not pairs:
            raise ValueError(f"no images with masks under {images_dir}; expected *.jpg images with *.png masks")
        return cls(pairs, **kwargs)

    @classmethod
    def from_davis(cls, root: str | os.PathLike, split: str = "train", every: int = 5, **kwargs) -> "StaticClipDataset":
        """Every ``every``-th annotated frame of a DAVIS-format root (e.g. the teaching world) as static images."""
        pairs = []
        for seq in davis_sequences(root, split):
            pairs += [(seq.frame_paths[i], seq.gt_paths[i]) for i in seq.gt_indices[::every]]
        kwargs.setdefault("mask_mode", "ids")
        kwargs.setdefault("max_objects", 3)
        return cls(pairs, **kwargs)

    def __len__(self) -> int:
        return len(self.pairs) * self.repeat

    # one item ---------------------------------------------------------------------------
    def __getitem__(self, index: int) -> dict:
        rng = item_rng()
        image_path, mask_path = self.pairs[index % len(self.pairs)]
        image = read_frame(image_path)
        mask = read_mask(mask_path, binary=(self.mask_mode == "binary"))
        check_same_size(image, mask, image_path, mask_path)
        name = f"{image_path.parent.name}/{image_path.stem}"
        names = [f"{image_path.stem}-{t}" for t in range(self.num_frames)]
        for attempt in range(8):
            frames, masks = self._pseudo_clip(rng, image, mask, augment=self.augment and attempt < 6)
            sample = build_clip_sample(frames, masks, rng, self.max_objects, self.min_object_pixels, name, names)
            if sample is not None:
                return sample
        raise ValueError(f"mask {mask_path} has no object of at least {self.min_object_pixels} pixels; "
                         "check it (binary masks: object > 127) or lower min_object_pixels")

    def _pseudo_clip(self, rng: np.random.Generator, image: np.ndarray, mask: np.ndarray, augment: bool):
        in_hw = image.shape[:2]
        out_hw = self.crop_size or in_hw
        if not augment:
            m = A.resize_matrix(in_hw, out_hw)
            return [A.warp_image(image, m, out_hw)] * self.num_frames, [A.warp_mask(mask, m, out_hw)] * self.num_frames
        clip_matrix = A.random_affine_matrix(rng, in_hw, scale=self.scale_jitter or (0.8, 1.5))
        if rng.random() < 0.5:
            clip_matrix = A.hflip_matrix(in_hw[1]) @ clip_matrix
        clip_jitter_seed = int(rng.integers(2**62))
        gray = rng.random() < 0.05
        short = max(out_hw[0] / in_hw[0], out_hw[1] / in_hw[1])     # resize the short side to the crop
        if self.scale_jitter is not None:
            short = 1.0                                              # one scale: the image's own resolution
        frames, masks = [], []
        for _ in range(self.num_frames):
            per_frame = A.random_affine_matrix(rng, in_hw, degrees=20, scale=(0.9, 1.1), shear=10)
            spare_x, spare_y = in_hw[1] * short - out_hw[1], in_hw[0] * short - out_hw[0]
            x0 = rng.uniform(min(0.0, spare_x), max(0.0, spare_x))
            y0 = rng.uniform(min(0.0, spare_y), max(0.0, spare_y))
            crop = np.array([[short, 0, 0.5 * short - 0.5 - x0], [0, short, 0.5 * short - 0.5 - y0], [0, 0, 1]])
            matrix = crop @ per_frame @ clip_matrix
            frame = A.warp_image(image, matrix, out_hw)
            target = A.warp_mask(mask, matrix, out_hw)
            if rng.random() < self.tps_probability:
                maps = A.tps_maps(rng, out_hw, scale=0.02)
                frame = A.remap_image(frame, maps)
                target = A.remap_mask(target, maps)
            frame = A.color_jitter(np.random.default_rng(clip_jitter_seed), frame, 0.1, 0.05, 0.05, 0.05)
            frame = A.color_jitter(rng, frame, 0.1, 0.05, 0.05, 0.0)
            if gray:
                frame = A.to_grayscale(frame)
            frames.append(frame)
            masks.append(target)
        return frames, masks
