"""Main-training clips from DAVIS-format or YouTube-VOS videos (peers.md §2, "Main training").

One item is a clip of ``num_frames`` frames (T = 3) of one video, with up to ``max_objects``
objects (O_max = 3) drawn from those visible in the clip's first frame::

    {"frames":   float32 (T, 3, H, W) in [0, 1],
     "masks":    float32 (T, O_max, H, W)  0/1, one channel per chosen object (zeros for padding),
     "labels":   int64   (T, H, W)         0 = background, i = the i-th chosen object,
     "selector": float32 (O_max,)          1 for real objects, 0 for padding,
     "info":     {"name": str, "frames": [T frame names],
                  "object_ids": [O_max ids in the dataset's masks, 0 where the selector is 0]}}

All shapes are fixed, so the default ``DataLoader`` collate works. Sampling follows the
references: frames within ``max_skip`` of each other (``set_max_skip`` from the trainer, with
:func:`~isvos_lite.data.sampling.max_skip_at` as the curriculum), time reversal with p = 0.5,
YouTube-VOS skips divided by 5 (its labels exist every 5th frame). Augmentation: clip-wide flip,
RandomResizedCrop (scale 0.36-1), ColorJitter(0.1, 0.03, 0.03, 0), grayscale p = 0.05; per-frame
affine (±15°, shear 10) and ColorJitter(0.01, 0.01, 0.01, 0). Masks always get the frame's
geometric transform with nearest interpolation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from isvos_lite.data import augment as A
from isvos_lite.data.palette import check_same_size, read_frame, read_mask
from isvos_lite.data.sampling import sample_clip_indices
from isvos_lite.data.sequences import davis_sequences, youtube_sequences

__all__ = ["TrainingVideo", "VOSClipDataset", "build_clip_sample", "detect_format", "item_rng"]


@dataclass
class TrainingVideo:
    """A video's labelled frames: frame_paths[i] is annotated by mask_paths[i]."""
    name: str
    frame_paths: list[Path]
    mask_paths: list[Path]
    skip_divisor: int = 1        # 5 for YouTube-VOS (one labelled frame in 5)


def item_rng() -> np.random.Generator:
    """A numpy generator seeded from torch's RNG, so ``torch.manual_seed`` (and DataLoader worker seeding) fix it."""
    return np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))


def detect_format(root: Path) -> str:
    """'davis' if root has JPEGImages/ and ImageSets/, 'youtube' if it has */meta.json."""
    if (root / "JPEGImages").is_dir() and (root / "ImageSets").is_dir():
        return "davis"
    if any((root / split / "meta.json").exists() for split in ("train", "valid", "test")):
        return "youtube"
    raise ValueError(f"{root} is neither a DAVIS root (JPEGImages/ + ImageSets/) nor a YouTube-VOS root "
                     "(train/meta.json); point at the folder that contains them")


def build_clip_sample(frames: list[np.ndarray], masks: list[np.ndarray], rng: np.random.Generator,
                      max_objects: int, min_pixels: int, name: str, frame_names: list[str]) -> dict | None:
    """Pick up to ``max_objects`` objects of the first frame and build the training dict; None if none is visible."""
    first = masks[0]
    ids, counts = np.unique(first, return_counts=True)
    candidates = [int(i) for i, c in zip(ids, counts) if i != 0 and c >= min_pixels]
    if not candidates:
        return None
    chosen = sorted(rng.permutation(candidates)[:max_objects].tolist())
    t, (h, w) = len(frames), first.shape
    labels = np.zeros((t, h, w), dtype=np.int64)                      # (T, H, W)
    onehot = np.zeros((t, max_objects, h, w), dtype=np.float32)       # (T, O_max, H, W)
    for k, object_id in enumerate(chosen):
        for i, mask in enumerate(masks):
            region = mask == object_id
            labels[i][region] = k + 1
            onehot[i, k][region] = 1.0
    selector = np.zeros(max_objects, dtype=np.float32)
    selector[:len(chosen)] = 1.0
    images = np.stack(frames).astype(np.float32).transpose(0, 3, 1, 2) / 255.0   # (T, 3, H, W)
    return {
        "frames": torch.from_numpy(np.ascontiguousarray(images)),
        "masks": torch.from_numpy(onehot),
        "labels": torch.from_numpy(labels),
        "selector": torch.from_numpy(selector),
        # object_ids is padded with 0 (= no object) to O_max so that the default collate can stack it
        "info": {"name": name, "frames": list(frame_names),
                 "object_ids": [int(i) for i in chosen] + [0] * (max_objects - len(chosen))},
    }


class VOSClipDataset(Dataset):
    """Training clips of a DAVIS-format (also the teaching world) or YouTube-VOS root; see the module docstring."""

    def __init__(self, root: str | os.PathLike, split: str = "train", *, format: str = "auto", year: int = 2017,
                 resolution: str = "480p", num_frames: int = 3, max_objects: int = 3, crop_size=384,
                 max_skip: int = 5, reverse_probability: float = 0.5, augment: bool = True, repeat: int = 1,
                 min_object_pixels: int = 20, names: list[str] | None = None,
                 scale_jitter: tuple[float, float] | None = None):
        self.root = Path(root)
        self.scale_jitter = scale_jitter      # None: RandomResizedCrop (36-100 %); (lo, hi): one-scale crops
        if not self.root.exists():
            raise FileNotFoundError(f"dataset root {self.root} does not exist; generate the teaching world with "
                                    "`isvos-lite toy-data --out DIR` or see data/README.md for DAVIS / YouTube-VOS")
        if num_frames < 2:
            raise ValueError(f"num_frames must be >= 2 (a reference frame and at least one to segment), got {num_frames}")
        if max_objects < 1:
            raise ValueError(f"max_objects must be >= 1, got {max_objects}")
        if repeat < 1:
            raise ValueError(f"repeat must be >= 1, got {repeat}")
        self.format = detect_format(self.root) if format == "auto" else format
        self.num_frames = num_frames
        self.max_objects = max_objects
        self.crop_size = A.as_size(crop_size)
        self.reverse_probability = reverse_probability
        self.augment = augment
        self.repeat = repeat
        self.min_object_pixels = min_object_pixels
        self.set_max_skip(max_skip)
        self.videos = self._index(split, year, resolution, names)

    # index ------------------------------------------------------------------------------
    def _index(self, split: str, year: int, resolution: str, names) -> list[TrainingVideo]:
        if self.format == "davis":
            sequences = davis_sequences(self.root, split, year=year, resolution=resolution, names=names,
                                        require_all_masks=True)
            divisor = 1
        elif self.format == "youtube":
            sequences = youtube_sequences(self.root, split, all_frames=False, names=names)
            divisor = 5
        else:
            raise ValueError(f"format must be 'auto', 'davis' or 'youtube', got {self.format!r}")
        videos = []
        for seq in sequences:
            indices = seq.gt_indices
            if len(indices) >= self.num_frames:
                videos.append(TrainingVideo(seq.name, [seq.frame_paths[i] for i in indices],
                                            [seq.gt_paths[i] for i in indices], divisor))
        if not videos:
            raise ValueError(f"no video of {self.root} split {split!r} has {self.num_frames} labelled frames; "
                             "use fewer num_frames or check the annotations")
        return videos

    # curriculum -------------------------------------------------------------------------
    def set_max_skip(self, max_skip: int) -> None:
        """Called by the trainer as the curriculum advances (``max_skip_at(progress)``)."""
        if int(max_skip) < 1:
            raise ValueError(f"max_skip must be >= 1, got {max_skip}")
        self.max_skip = int(max_skip)

    def __len__(self) -> int:
        return len(self.videos) * self.repeat

    # one item ---------------------------------------------------------------------------
    def __getitem__(self, index: int) -> dict:
        rng = item_rng()
        video = self.videos[index % len(self.videos)]
        skip = max(1, self.max_skip // video.skip_divisor)
        sample = None
        for attempt in range(8):
            clip = sample_clip_indices(rng, len(video.frame_paths), self.num_frames, skip, self.reverse_probability)
            frames, masks = self._load(video, clip)
            # the last attempts fall back to the un-augmented frames, so an item always has an object
            sample = self._augment_and_build(frames, masks, rng, video, clip, augment=self.augment and attempt < 6)
            if sample is not None:
                return sample
        raise ValueError(f"video {video.name} has no object of at least {self.min_object_pixels} pixels in its frames; "
                         "check its annotations or lower min_object_pixels")

    def _load(self, video: TrainingVideo, clip: list[int]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        frames, masks = [], []
        for i in clip:
            frame = read_frame(video.frame_paths[i])
            mask = read_mask(video.mask_paths[i])
            check_same_size(frame, mask, video.frame_paths[i], video.mask_paths[i])
            frames.append(frame)
            masks.append(mask)
        return frames, masks

    def _augment_and_build(self, frames, masks, rng, video, clip, augment: bool) -> dict | None:
        in_hw = frames[0].shape[:2]
        out_hw = self.crop_size or in_hw
        names = [video.frame_paths[i].stem for i in clip]
        if not augment:
            m = A.resize_matrix(in_hw, out_hw)
            frames = [A.warp_image(f, m, out_hw) for f in frames]
            masks = [A.warp_mask(k, m, out_hw) for k in masks]
            return build_clip_sample(frames, masks, rng, self.max_objects, self.min_object_pixels, video.name, names)
        # clip-wide: flip + random resized crop, colour jitter, grayscale
        if self.scale_jitter is None:
            clip_matrix = A.random_resized_crop_matrix(rng, in_hw, out_hw, scale=(0.36, 1.0))
        else:
            clip_matrix = A.native_scale_crop_matrix(rng, in_hw, out_hw, self.scale_jitter)
        if rng.random() < 0.5:
            clip_matrix = clip_matrix @ A.hflip_matrix(in_hw[1])
        jitter_seed = int(rng.integers(2**62))
        gray = rng.random() < 0.05
        out_frames, out_masks = [], []
        for frame, mask in zip(frames, masks):
            if frame.shape[:2] != in_hw:
                raise ValueError(f"video {video.name}: frames of one clip differ in size; all frames of a video must have one size")
            per_frame = A.random_affine_matrix(rng, in_hw, degrees=15, shear=10)
            matrix = clip_matrix @ per_frame
            image = A.warp_image(frame, matrix, out_hw)
            image = A.color_jitter(np.random.default_rng(jitter_seed), image, 0.1, 0.03, 0.03, 0.0)   # same for the clip
            image = A.color_jitter(rng, image, 0.01, 0.01, 0.01, 0.0)
            if gray:
                image = A.to_grayscale(image)
            out_frames.append(image)
            out_masks.append(A.warp_mask(mask, matrix, out_hw))
        return build_clip_sample(out_frames, out_masks, rng, self.max_objects, self.min_object_pixels, video.name, names)
