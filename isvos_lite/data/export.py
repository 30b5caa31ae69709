"""Write the teaching world to disk in the public formats: DAVIS 2017, COCO instances, YouTube-VOS.

Layout under ``out`` (the same layouts as the real datasets, so every loader and the official
DAVIS 2017 evaluation run unchanged)::

    JPEGImages/480p/<seq>/00000.jpg          every frame (the frame size is configurable)
    Annotations/480p/<seq>/00000.png         every frame, palette PNG, pixel = object id
    ImageSets/2017/{train,val,distractor}.txt
    ImageSets/2016/{train,val}.txt           the same sequences (the 2016 task merges all objects)
    coco/{train,val}/<seq>_<frame>.jpg       the instance twin: every ``coco_every``-th frame
    coco/annotations/instances_{train,val}.json   (val = val + distractor videos)
    youtube/train/{JPEGImages,Annotations}/<vid>/   every 5th frame, labels on every one of them
    youtube/train/meta.json
    youtube/train_all_frames/JPEGImages/<vid>/      all frames
    youtube/valid/JPEGImages/<vid>/                 every 5th frame
    youtube/valid/Annotations/<vid>/                only the frames where objects first appear,
                                                    holding only those new objects (as the official valid set)
    youtube/valid/meta.json
    youtube/valid_all_frames/JPEGImages/<vid>/
    youtube/valid_gt/Annotations/<vid>/             every 5th frame, all objects (not in the official
                                                    release; lets you score YouTube-style runs locally)
    world.json                                      seed, knobs, categories, objects of every video

The whole world is written into a temporary sibling folder and renamed into place at the end,
so an interrupted run never leaves a half-written dataset (files inside it need no atomic writes).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from isvos_lite.data.coco import mask_to_bbox, rle_encode
from isvos_lite.data.palette import write_frame, write_mask
from isvos_lite.data.world import VideoSpec, WorldConfig, _VideoRenderer, sample_video

__all__ = ["WorldSizes", "WorldSummary", "generate_world", "directory_size"]

YOUTUBE_STEP = 5   # YouTube-VOS labels (and its JPEGImages folders) hold every 5th frame
VAL_STREAM = 100_000   # validation videos use indices from here: they do not depend on the number of training videos


@dataclass
class WorldSizes:
    """How many videos of each split to generate."""
    train: int = 60
    val: int = 12
    distractor: int = 8
    youtube_train: int = 20
    youtube_valid: int = 6
    coco_every: int = 5     # every n-th frame of a DAVIS-format video becomes a COCO image

    @classmethod
    def scaled(cls, train: int) -> "WorldSizes":
        """Sizes that keep the default proportions for ``train`` training videos."""
        if train < 1:
            raise ValueError(f"--videos must be >= 1, got {train}")
        return cls(train=train, val=max(1, round(train / 5)), distractor=max(1, round(train * 8 / 60)),
                   youtube_train=max(1, round(train / 3)), youtube_valid=max(1, round(train / 10)))


@dataclass
class WorldSummary:
    out: Path
    videos: int
    frames: int
    bytes_on_disk: int
    seconds: float
    splits: dict[str, int]

    def __str__(self) -> str:
        split_text = ", ".join(f"{k} {v}" for k, v in self.splits.items())
        return (f"teaching world in {self.out}: {self.videos} videos ({split_text}), {self.frames} rendered frames, "
                f"{self.bytes_on_disk / 2**20:.1f} MiB on disk, {self.seconds:.1f} s")


def directory_size(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def _frame_name(t: int) -> str:
    return f"{t:05d}"


def _object_table(spec: VideoSpec) -> dict:
    return {str(o.object_id): {"category": o.category, "appear_frame": o.appear_frame} for o in spec.objects}


class _CocoWriter:
    """Collects images and instance annotations of one COCO split."""

    def __init__(self, categories: tuple[str, ...]):
        self.categories = list(categories)
        self.images: list[dict] = []
        self.annotations: list[dict] = []

    def add(self, file_name: str, labels: np.ndarray, spec: VideoSpec, t: int, min_pixels: int = 16) -> None:
        image_id = len(self.images) + 1
        h, w = labels.shape
        self.images.append({"id": image_id, "file_name": file_name, "height": h, "width": w,
                            "video": spec.name, "frame": _frame_name(t)})
        for obj in spec.objects:
            mask = labels == obj.object_id
            area = int(mask.sum())
            if area < min_pixels:
                continue
            self.annotations.append({
                "id": len(self.annotations) + 1,
                "image_id": image_id,
                "category_id": self.categories.index(obj.category) + 1,
                "segmentation": rle_encode(mask),
                "area": area,
                "bbox": mask_to_bbox(mask),
                "iscrowd": 0,
            })

    def write(self, path: Path) -> None:
        data = {
            "info": {"description": "isvos-lite teaching world, instance twin", "version": "1.0"},
            "images": self.images,
            "annotations": self.annotations,
            "categories": [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(self.categories)],
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data))


def _write_davis_video(spec: VideoSpec, root: Path, coco: _CocoWriter, coco_dir: Path, coco_every: int, quality: int) -> None:
    renderer = _VideoRenderer(spec)
    for t in range(spec.num_frames):
        frame, labels = renderer.frame(t)
        name = _frame_name(t)
        jpg = write_frame(root / "JPEGImages" / "480p" / spec.name / f"{name}.jpg", frame, quality=quality, atomic=False)
        write_mask(root / "Annotations" / "480p" / spec.name / f"{name}.png", labels, atomic=False)
        if t % coco_every == 0:
            file_name = f"{spec.name}_{name}.jpg"
            coco_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(jpg, coco_dir / file_name)   # the very same bytes as the video frame
            coco.add(file_name, labels, spec, t)


def _write_youtube_video(spec: VideoSpec, root: Path, split: str, quality: int) -> dict:
    """Write one YouTube-VOS video; returns its meta.json entry."""
    renderer = _VideoRenderer(spec)
    objects: dict[str, dict] = {str(o.object_id): {"category": o.category, "frames": []} for o in spec.objects}
    first_seen: dict[int, str] = {}
    for t in range(spec.num_frames):
        frame, labels = renderer.frame(t)
        name = _frame_name(t)
        jpg = write_frame(root / f"{split}_all_frames" / "JPEGImages" / spec.name / f"{name}.jpg", frame, quality=quality,
                          atomic=False)
        if t % YOUTUBE_STEP:
            continue
        (root / split / "JPEGImages" / spec.name).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(jpg, root / split / "JPEGImages" / spec.name / f"{name}.jpg")
        present = [int(i) for i in np.unique(labels) if i != 0]
        new_ids = [i for i in present if i not in first_seen]
        for i in new_ids:
            first_seen[i] = name
        for i in present if split == "train" else [i for i in first_seen]:
            objects[str(i)]["frames"].append(name)
        if split == "train":
            write_mask(root / "train" / "Annotations" / spec.name / f"{name}.png", labels, atomic=False)
        else:
            write_mask(root / "valid_gt" / "Annotations" / spec.name / f"{name}.png", labels, atomic=False)
            if new_ids:
                given = np.where(np.isin(labels, new_ids), labels, 0).astype(np.uint8)
                write_mask(root / "valid" / "Annotations" / spec.name / f"{name}.png", given, atomic=False)
    objects = {k: v for k, v in objects.items() if v["frames"]}
    return {"objects": objects}


def generate_world(out: str | os.PathLike, seed: int = 0, config: WorldConfig | None = None,
                   sizes: WorldSizes | None = None, youtube: bool = True, overwrite: bool = False,
                   jpeg_quality: int = 85, progress: bool = True) -> WorldSummary:
    """Generate the teaching world under ``out`` (see the module docstring for the layout)."""
    config = config or WorldConfig()
    sizes = sizes or WorldSizes()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder path")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"--out {out} already exists and is not empty; pass --overwrite to replace it or choose another folder")
    if sizes.coco_every < 1:
        raise ValueError(f"coco_every must be >= 1, got {sizes.coco_every}")
    start = time.time()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)   # mkdtemp makes a private 0700 folder; the dataset should be readable
    try:
        plan: list[tuple[str, str, int]] = (
            [("train", "normal", i) for i in range(sizes.train)]
            + [("val", "normal", VAL_STREAM + i) for i in range(sizes.val)]
            + [("distractor", "distractor", i) for i in range(sizes.distractor)]
        )
        youtube_plan = ([("train", "late", i) for i in range(sizes.youtube_train)]
                        + [("valid", "late", VAL_STREAM + i) for i in range(sizes.youtube_valid)]) if youtube else []
        coco = {"train": _CocoWriter(config.categories), "val": _CocoWriter(config.categories)}
        split_names: dict[str, list[str]] = {"train": [], "val": [], "distractor": []}
        world_info: dict = {"seed": seed, "config": dataclasses.asdict(config), "sizes": dataclasses.asdict(sizes),
                            "categories": list(config.categories), "sequences": {}, "youtube": {}}
        frames = 0
        bar = tqdm(total=len(plan) + len(youtube_plan), desc="toy-data", unit="video", disable=not progress)
        for split, kind, index in plan:
            name = f"{split}-{len(split_names[split]):03d}"
            spec = sample_video(config, seed, kind, index, name=name)
            coco_split = "train" if split == "train" else "val"
            _write_davis_video(spec, tmp, coco[coco_split], tmp / "coco" / coco_split, sizes.coco_every, jpeg_quality)
            split_names[split].append(name)
            world_info["sequences"][name] = {"split": split, "kind": kind, "num_frames": spec.num_frames,
                                             "objects": _object_table(spec)}
            frames += spec.num_frames
            bar.update(1)
        youtube_meta: dict[str, dict] = {"train": {}, "valid": {}}
        for split, kind, index in youtube_plan:
            name = f"yt{split}-{len(youtube_meta[split]):03d}"
            spec = sample_video(config, seed, kind, index, name=name)
            youtube_meta[split][name] = _write_youtube_video(spec, tmp / "youtube", split, jpeg_quality)
            world_info["youtube"][name] = {"split": split, "num_frames": spec.num_frames, "objects": _object_table(spec)}
            frames += spec.num_frames
            bar.update(1)
        bar.close()

        for split, names in split_names.items():
            (tmp / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
            (tmp / "ImageSets" / "2017" / f"{split}.txt").write_text("".join(n + "\n" for n in names))
        for split in ("train", "val"):
            (tmp / "ImageSets" / "2016").mkdir(parents=True, exist_ok=True)
            (tmp / "ImageSets" / "2016" / f"{split}.txt").write_text("".join(n + "\n" for n in split_names[split]))
        for split, writer in coco.items():
            writer.write(tmp / "coco" / "annotations" / f"instances_{split}.json")
        for split, videos in youtube_meta.items():
            if youtube:
                (tmp / "youtube" / split).mkdir(parents=True, exist_ok=True)
                (tmp / "youtube" / split / "meta.json").write_text(json.dumps({"videos": videos}, indent=1))
        (tmp / "world.json").write_text(json.dumps(world_info, indent=1))

        if out.exists():
            trash = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
            os.replace(out, trash / out.name)
            os.replace(tmp, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    splits = {k: len(v) for k, v in split_names.items()}
    if youtube:
        splits.update({"youtube-train": sizes.youtube_train, "youtube-valid": sizes.youtube_valid})
    return WorldSummary(out=out, videos=len(plan) + len(youtube_plan), frames=frames,
                        bytes_on_disk=directory_size(out), seconds=time.time() - start, splits=splits)
