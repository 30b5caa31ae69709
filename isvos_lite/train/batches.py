"""Training data for both stages and the joint IS task, as deterministic per-step batches.

Where the data lives (``DataSources.discover``):

* ``root``: a DAVIS-format folder (``JPEGImages/480p``, ``Annotations/480p``, ``ImageSets/2017/train.txt``),
  e.g. the teaching world from ``isvos-lite toy-data``. Main training clips come from its ``train`` split,
  validation from ``val``.
* ``youtube`` (optional): a YouTube-VOS folder (``train/meta.json``) added to main training, with the DAVIS
  videos repeated ×5 as in STCN / XMem.
* ``static`` (optional): a folder of images + masks (STCN layout: ``x.jpg`` next to ``x.png``) for static
  pretraining; without it, every 5th annotated frame of the DAVIS ``train`` split is used as a still image.
* instance images for the IS branch: ``TrainConfig.instance_data = "stream"`` draws them from the unlimited
  procedural stream (``isvos_lite.data.instance_stream``, at the world's frame size read from
  ``<root>/world.json``); ``"coco"`` reads ``<coco>/annotations/instances_train.json`` (or
  ``instances_train2017.json``) with images in ``<coco>/train`` (or ``train2017``); default ``<root>/coco``.

Why "per-step batches": the batch of training step s on process r is a pure function of (seed, stage, s, r).
Each item gets its own seed, the curriculum's ``max_skip`` is set from s, and the global RNG is left untouched.
So a resumed run sees exactly the batches the uninterrupted run would have seen, with any number of
DataLoader workers (``StepBatches`` is indexed by step; a worker builds a whole batch).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset

from isvos_lite.data.instance_dataset import COCOInstanceDataset, collate_instances
from isvos_lite.data.static_dataset import StaticClipDataset
from isvos_lite.data.vos_dataset import VOSClipDataset
from isvos_lite.train.config import STAGES, StageConfig

__all__ = ["DataSources", "build_clip_dataset", "build_instance_dataset", "step_seed", "StepBatches"]


@dataclass
class DataSources:
    root: Path
    coco_images: Path
    coco_annotations: Path
    youtube: Path | None = None
    static: Path | None = None

    @classmethod
    def discover(cls, root: str | os.PathLike, youtube=None, static=None, coco=None) -> "DataSources":
        """Check the layout of every folder and say precisely what is missing."""
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"--data {root} does not exist; generate the teaching world with "
                                    f"`isvos-lite toy-data --out {root}` or point at a DAVIS 2017 folder")
        for needed in ("JPEGImages/480p", "Annotations/480p", "ImageSets/2017/train.txt"):
            if not (root / needed).exists():
                raise ValueError(f"--data {root} is not in DAVIS layout: {root / needed} is missing "
                                 "(expected JPEGImages/480p/<video>/, Annotations/480p/<video>/, ImageSets/2017/train.txt)")
        coco = Path(coco) if coco is not None else root / "coco"
        images, annotations = None, None
        for split in ("train", "train2017"):
            if (coco / "annotations" / f"instances_{split}.json").exists():
                annotations, images = coco / "annotations" / f"instances_{split}.json", coco / split
                break
        if annotations is None:
            raise FileNotFoundError(f"no COCO instances for the IS branch: expected {coco}/annotations/instances_train.json "
                                    f"(or instances_train2017.json); pass --coco DIR (the teaching world has DIR/coco)")
        if not images.is_dir():
            raise FileNotFoundError(f"COCO image folder {images} does not exist (next to {annotations})")
        if youtube is not None:
            youtube = Path(youtube)
            if not (youtube / "train" / "meta.json").exists():
                raise ValueError(f"--youtube {youtube} is not a YouTube-VOS folder: {youtube / 'train' / 'meta.json'} is missing")
        if static is not None:
            static = Path(static)
            if not static.is_dir():
                raise FileNotFoundError(f"--static-data {static} does not exist")
        return cls(root=root, coco_images=images, coco_annotations=annotations, youtube=youtube, static=static)


def build_clip_dataset(sources: DataSources, stage_name: str, stage: StageConfig) -> Dataset | None:
    """The VOS clips of a stage: none (instance), pseudo-clips of still images (static) or video clips (main)."""
    if stage_name == "instance":
        return None
    common = dict(num_frames=stage.clip_frames, max_objects=stage.max_objects, crop_size=stage.crop_size,
                  scale_jitter=stage.scale_jitter)
    if stage_name == "static":
        if sources.static is not None:
            return StaticClipDataset.from_folder(sources.static, **common)
        return StaticClipDataset.from_davis(sources.root, "train", **common)
    if stage_name == "main":
        skip = stage.max_skip_at(0)
        davis = VOSClipDataset(sources.root, "train", format="davis", max_skip=skip,
                               repeat=5 if sources.youtube is not None else 1, **common)
        if sources.youtube is None:
            return davis
        youtube = VOSClipDataset(sources.youtube, "train", format="youtube", max_skip=skip, **common)
        return ConcatDataset([davis, youtube])
    raise ValueError(f"unknown stage {stage_name!r}; choose one of {', '.join(STAGES)}")


def world_frame_size(root: Path) -> tuple[int, int] | None:
    """(height, width) of the teaching world's frames from ``<root>/world.json``, or None for other datasets."""
    info = Path(root) / "world.json"
    if not info.exists():
        return None
    config = json.loads(info.read_text()).get("config", {})
    return int(config["height"]), int(config["width"])


def build_instance_dataset(sources: DataSources, stage: StageConfig, num_classes: int, data: str = "coco",
                           seed: int = 0, photos: float = 0.0) -> Dataset:
    """IS images at the stage's crop size (§4.1: "a resolution of 384, compatible with the VOS branch").

    ``data="coco"``: the instances JSON of ``sources`` (scale jitter 0.5-1.5 unless the stage sets one scale);
    ``data="stream"``: the unlimited procedural stream, rendered at the world's frame size; ``photos`` is the
    probability of a training-photograph texture per instance and of a photograph background per image.
    """
    if data == "stream":
        from isvos_lite.data.instance_stream import InstanceStreamConfig, InstanceStreamDataset
        height, width = world_frame_size(sources.root) or (InstanceStreamConfig.height, InstanceStreamConfig.width)
        config = InstanceStreamConfig(height=height, width=width, crop_size=stage.crop_size,
                                      scale_jitter=stage.scale_jitter or (0.8, 1.25),
                                      photo_texture_probability=photos, photo_background_probability=photos)
        dataset = InstanceStreamDataset(config, seed=seed, augment=True)
    else:
        dataset = COCOInstanceDataset(sources.coco_images, sources.coco_annotations, crop_size=stage.crop_size,
                                      augment=True, scale_range=stage.scale_jitter or (0.5, 1.5))
    if dataset.num_classes > num_classes:
        raise ValueError(f"{sources.coco_annotations} has {dataset.num_classes} categories "
                         f"({', '.join(dataset.category_names[:8])}{', ...' if dataset.num_classes > 8 else ''}) but the model "
                         f"predicts {num_classes} classes; use a model preset with num_classes >= {dataset.num_classes} "
                         "or a COCO file with fewer categories")
    return dataset


def step_seed(seed: int, stage_name: str, step: int, rank: int, stream: int) -> int:
    """A 63-bit seed that depends only on its arguments (numpy SeedSequence mixing)."""
    entropy = [seed, STAGES.index(stage_name), step, rank, stream]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> np.uint64(1))


def _set_max_skip(dataset: Dataset, max_skip: int) -> None:
    for part in getattr(dataset, "datasets", [dataset]):
        if hasattr(part, "set_max_skip"):
            part.set_max_skip(max_skip)


class StepBatches(Dataset):
    """``batches[step]`` is the training batch of one step on this process (see the module docstring).

    Returns ``{"frames": (b, T, 3, H, W), "masks": (b, T, O, H, W), "labels": (b, T, H, W),
    "selector": (b, O), "max_skip": int, "instance": (images (b_is, 3, H, W), targets) or None}``.
    With ``clips=None`` (the instance stage) the four clip tensors are None and every step has IS images.
    """

    # streams of randomness within one step
    VOS_STREAM, INSTANCE_STREAM = 1, 2

    def __init__(self, clips: Dataset, instances: Dataset | None, stage_name: str, stage: StageConfig,
                 clips_per_process: int, instances_per_process: int, instance_every: int, seed: int, rank: int):
        self.clips, self.instances = clips, instances
        self.stage_name, self.stage = stage_name, stage
        self.clips_per_process, self.instances_per_process = clips_per_process, instances_per_process
        self.instance_every = instance_every
        self.seed, self.rank = seed, rank

    def __len__(self) -> int:
        return self.stage.iterations

    def _draw(self, dataset: Dataset, count: int, step: int, stream: int) -> list:
        """``count`` items, each chosen and augmented with its own seed; the caller's RNG state is preserved."""
        items = []
        for i in range(count):
            item_seed = step_seed(self.seed, self.stage_name, step, self.rank, stream * 1_000_003 + i)
            index = int(np.random.default_rng(item_seed).integers(len(dataset)))
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(item_seed)          # the datasets draw their augmentation from torch's RNG
                items.append(dataset[index])
        return items

    def __getitem__(self, step: int) -> dict:
        max_skip = self.stage.max_skip_at(step)
        if self.clips is None:          # the instance stage: IS images only, every step
            batch = {key: None for key in ("frames", "masks", "labels", "selector")}
            batch["max_skip"] = 0
            batch["instance"] = collate_instances(self._draw(self.instances, self.instances_per_process, step,
                                                             self.INSTANCE_STREAM))
            return batch
        _set_max_skip(self.clips, max_skip)
        clips = self._draw(self.clips, self.clips_per_process, step, self.VOS_STREAM)
        batch = {key: torch.stack([c[key] for c in clips]) for key in ("frames", "masks", "labels", "selector")}
        batch["max_skip"] = max_skip
        batch["instance"] = None
        if self.instances is not None and self.instance_every and step % self.instance_every == 0:
            batch["instance"] = collate_instances(self._draw(self.instances, self.instances_per_process, step,
                                                             self.INSTANCE_STREAM))
        return batch
