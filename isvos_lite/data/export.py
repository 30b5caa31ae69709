"""Write the teaching world to disk in the public formats: DAVIS 2017, COCO instances, YouTube-VOS.

Layout under ``out`` (the same layouts as the real datasets, so every loader and the official
DAVIS 2017 evaluation run unchanged)::

    JPEGImages/480p/<seq>/00000.jpg          every frame (the frame size is configurable, 160x288 by default)
    Annotations/480p/<seq>/00000.png         every frame, palette PNG, pixel = object id
    ImageSets/2017/{train,val,lookalike,heldout,real}.txt
    ImageSets/2016/{train,val}.txt           the same sequences (the 2016 task merges all objects)
    coco/{train,val}/000000.jpg              the instance stream (isvos_lite.data.instance_stream):
    coco/annotations/instances_{train,val}.json   still images, not video frames
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
    world.json                                      version, seed, knobs, categories, objects of every video

The ``train`` list holds the procedural ``train-NNN`` videos and the ``trainphoto-NNN`` videos (the
same kinds of video dressed in training photographs, :mod:`isvos_lite.data.photos`); the ``real``
split (:mod:`isvos_lite.data.real_split`) shows the two photographs that training never uses.

Every split draws its videos from its own index stream (``*_STREAM`` below), so adding videos to
one split never changes another. About ``train_lookalike_fraction`` of the training videos are of
the ``lookalike`` kind (from the training index stream, so never one of the evaluated ones).

The whole world is written into a temporary sibling folder and renamed into place at the end,
so an interrupted run never leaves a half-written dataset (files inside it need no atomic writes).
Videos can be rendered by a pool of worker processes; the output is byte-identical whatever
the number of workers.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from isvos_lite.data.palette import write_frame, write_mask
from isvos_lite.data.shapes import HELDOUT_SHAPES, TEXTURE_FAMILIES_HELDOUT, TEXTURE_FAMILIES_TRAIN
from isvos_lite.data.world import VideoSpec, WorldConfig, _VideoRenderer, sample_video

__all__ = ["WorldSizes", "WorldSummary", "generate_world", "directory_size", "is_train_lookalike"]

YOUTUBE_STEP = 5   # YouTube-VOS labels (and its JPEGImages folders) hold every 5th frame
# index streams: split videos use indices from here, so they do not depend on the number of videos of other splits
TRAIN_STREAM = 0
VAL_STREAM = 100_000
LOOKALIKE_STREAM = 200_000
HELDOUT_STREAM = 300_000
TRAIN_PHOTO_STREAM = 400_000
REAL_STREAM = 500_000
# version of the generator, written to world.json: 3 added the trainphoto videos and the real split (the videos,
# frames and coco/ images a version-2 generator wrote for a seed are unchanged)
WORLD_VERSION = 3


@dataclass
class WorldSizes:
    """How many videos (and instance images) of each split to generate."""
    train: int = 80
    val: int = 60
    lookalike: int = 60
    heldout: int = 40
    # trainphoto-NNN training videos dressed in photographs (None: half of `train`, 40 by default)
    train_photo: int | None = None
    # videos of the `real` evaluation split, 30 frames each (None: a quarter of `train`, 20 by default)
    real: int | None = None
    youtube_train: int = 16
    youtube_valid: int = 6
    train_lookalike_fraction: float = 0.25   # of the training videos, this fraction is of the lookalike kind
    coco_train: int = 2000                   # instance-stream images of coco/ (isvos_lite.data.instance_stream)
    coco_val: int = 400

    def __post_init__(self) -> None:
        if self.train_photo is None:
            self.train_photo = int(round(max(self.train, 0) * 0.5))
        if self.real is None:
            self.real = int(round(max(self.train, 0) * 0.25))
        for name in ("train", "val", "lookalike", "heldout", "train_photo", "real", "youtube_train", "youtube_valid", "coco_train", "coco_val"):
            if getattr(self, name) < 0:
                raise ValueError(f"the number of {name} videos/images must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.train_lookalike_fraction <= 1:
            raise ValueError(f"train_lookalike_fraction must be in [0, 1], got {self.train_lookalike_fraction}")

    @classmethod
    def scaled(cls, train: int) -> "WorldSizes":
        """Sizes that keep the default proportions for ``train`` training videos."""
        if train < 1:
            raise ValueError(f"--videos must be >= 1, got {train}")
        d = cls()
        return cls(train=train, val=max(1, round(train * d.val / d.train)),
                   lookalike=max(1, round(train * d.lookalike / d.train)),
                   heldout=max(1, round(train * d.heldout / d.train)),
                   train_photo=max(1, round(train * d.train_photo / d.train)),
                   real=max(1, round(train * d.real / d.train)),
                   youtube_train=max(1, round(train * d.youtube_train / d.train)),
                   youtube_valid=max(1, round(train * d.youtube_valid / d.train)),
                   coco_train=max(1, round(train * d.coco_train / d.train)),
                   coco_val=max(1, round(train * d.coco_val / d.train)))


def is_train_lookalike(index: int, fraction: float) -> bool:
    """Whether training video ``index`` is of the lookalike kind: exactly floor(n * fraction) of the first n are."""
    return int(np.floor((index + 1) * fraction + 1e-9)) > int(np.floor(index * fraction + 1e-9))


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
    return {str(o.object_id): {"category": o.category, "texture": o.texture.kind, "appear_frame": o.appear_frame}
            for o in spec.annotated_objects}


def _video_info(spec: VideoSpec, split: str) -> dict:
    """The world.json entry of a video: annotated objects, and the unannotated look-alikes apart."""
    info = {"split": split, "kind": spec.kind, "num_frames": spec.num_frames, "background": spec.background_kind,
            "objects": _object_table(spec)}
    lookalikes = [o for o in spec.objects if not o.annotated]
    if lookalikes:
        info["lookalikes"] = [{"category": o.category, "texture": o.texture.kind, "annotated": False,
                               "lookalike_of": 1} for o in lookalikes]
    return info


def _write_davis_video(spec: VideoSpec, root: Path, quality: int) -> None:
    renderer = _VideoRenderer(spec)
    for t in range(spec.num_frames):
        frame, labels = renderer.frame(t)
        name = _frame_name(t)
        write_frame(root / "JPEGImages" / "480p" / spec.name / f"{name}.jpg", frame, quality=quality, atomic=False)
        write_mask(root / "Annotations" / "480p" / spec.name / f"{name}.png", labels, atomic=False)


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


def _render_task(task: tuple) -> tuple[str, dict, int]:
    """Sample and write one video (runs in a worker process or inline); returns (name, world.json entry, frames)."""
    fmt, config, seed, split, kind, index, name, evaluation, root, quality, photos = task
    if fmt == "real":
        from isvos_lite.data.real_split import REAL_FRAMES, sample_real_video
        video = sample_real_video(seed, index, config.height, config.width, REAL_FRAMES, name=name)
        for t, (frame, labels) in enumerate(zip(video.frames, video.labels)):
            write_frame(Path(root) / "JPEGImages" / "480p" / name / f"{_frame_name(t)}.jpg", frame, quality=quality,
                        atomic=False)
            write_mask(Path(root) / "Annotations" / "480p" / name / f"{_frame_name(t)}.png", labels, atomic=False)
        return name, video.info, len(video.frames)
    spec = sample_video(config, seed, kind, index, name=name, evaluation=evaluation, photos=photos)
    if fmt == "davis":
        _write_davis_video(spec, Path(root), quality)
        info = _video_info(spec, split)
        if photos:
            info["photos"] = True
        return name, info, spec.num_frames
    meta = _write_youtube_video(spec, Path(root) / "youtube", split, quality)
    return name, {"split": split, "num_frames": spec.num_frames, "objects": _object_table(spec), "meta": meta}, spec.num_frames


def _export_coco(out_dir: Path, seed: int, train_images: int, val_images: int, config: WorldConfig) -> dict:
    """The COCO twin: still images of the instance stream, same size and categories as the videos."""
    from isvos_lite.data.instance_stream import InstanceStreamConfig, export_instance_coco

    stream = InstanceStreamConfig(height=config.height, width=config.width, categories=config.categories)
    return export_instance_coco(out_dir, seed, train_images, val_images, stream)


def generate_world(out: str | os.PathLike, seed: int = 0, config: WorldConfig | None = None,
                   sizes: WorldSizes | None = None, youtube: bool = True, overwrite: bool = False,
                   jpeg_quality: int = 85, progress: bool = True, workers: int = 1) -> WorldSummary:
    """Generate the teaching world under ``out`` (see the module docstring for the layout).

    ``workers`` > 1 renders videos (and the COCO twin) in that many spawned processes; the output is
    the same bytes whatever the number.
    """
    config = config or WorldConfig()
    sizes = sizes or WorldSizes()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder path")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"--out {out} already exists and is not empty; pass --overwrite to replace it or choose another folder")
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    start = time.time()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)   # mkdtemp makes a private 0700 folder; the dataset should be readable
    pool = None
    try:
        # (split, kind, index, evaluation): every split has its own index stream
        # (split, kind, index, evaluation, format, name prefix)
        lookalike_kind = lambda i: "lookalike" if is_train_lookalike(i, sizes.train_lookalike_fraction) else "normal"
        plan: list[tuple[str, str, int, bool, str, str]] = (
            [("train", lookalike_kind(i), TRAIN_STREAM + i, False, "davis", "train") for i in range(sizes.train)]
            + [("val", "normal", VAL_STREAM + i, True, "davis", "val") for i in range(sizes.val)]
            + [("lookalike", "lookalike", LOOKALIKE_STREAM + i, True, "davis", "lookalike") for i in range(sizes.lookalike)]
            + [("heldout", "heldout", HELDOUT_STREAM + i, True, "davis", "heldout") for i in range(sizes.heldout)]
            + [("train", lookalike_kind(i), TRAIN_PHOTO_STREAM + i, False, "photo", "trainphoto")
               for i in range(sizes.train_photo)]
            + [("real", "real", i, True, "real", "real") for i in range(sizes.real)]
        )
        youtube_plan = ([("train", "late", TRAIN_STREAM + i, False) for i in range(sizes.youtube_train)]
                        + [("valid", "late", VAL_STREAM + i, False) for i in range(sizes.youtube_valid)]) if youtube else []
        split_names: dict[str, list[str]] = {"train": [], "val": [], "lookalike": [], "heldout": [], "real": []}
        prefix_count: dict[str, int] = {}
        tasks = []
        for split, kind, index, evaluation, fmt, prefix in plan:
            name = f"{prefix}-{prefix_count.get(prefix, 0):03d}"
            prefix_count[prefix] = prefix_count.get(prefix, 0) + 1
            split_names[split].append(name)
            tasks.append(("real" if fmt == "real" else "davis", config, seed, split, kind, index, name, evaluation,
                          str(tmp), jpeg_quality, fmt == "photo"))
        youtube_names: dict[str, list[str]] = {"train": [], "valid": []}
        for split, kind, index, evaluation in youtube_plan:
            name = f"yt{split}-{len(youtube_names[split]):03d}"
            youtube_names[split].append(name)
            tasks.append(("youtube", config, seed, split, kind, index, name, evaluation, str(tmp), jpeg_quality, False))

        from isvos_lite.data.photos import REAL_SPLIT_PHOTOS, TRAIN_PHOTOS

        world_info: dict = {"version": WORLD_VERSION, "seed": seed, "config": dataclasses.asdict(config), "sizes": dataclasses.asdict(sizes),
                            "categories": list(config.categories), "heldout_shapes": list(HELDOUT_SHAPES),
                            "texture_families": {"train": list(TEXTURE_FAMILIES_TRAIN), "heldout": list(TEXTURE_FAMILIES_HELDOUT)},
                            "photos": {"train": list(TRAIN_PHOTOS), "real": list(REAL_SPLIT_PHOTOS)},
                            "sequences": {}, "youtube": {}}
        youtube_meta: dict[str, dict] = {"train": {}, "valid": {}}
        frames = 0
        coco_args = (tmp / "coco", seed, sizes.coco_train, sizes.coco_val, config)
        bar = tqdm(total=len(tasks), desc="toy-data", unit="video", disable=not progress)
        if workers > 1:
            pool = multiprocessing.get_context("spawn").Pool(workers)
            coco_job = pool.apply_async(_export_coco, coco_args)       # runs alongside the videos
            results = pool.imap(_render_task, tasks)                  # in task order: deterministic
        else:
            coco_job = None
            results = map(_render_task, tasks)
        for (fmt, *_rest), (name, info, count) in zip(tasks, results):
            if fmt in ("davis", "real"):
                world_info["sequences"][name] = info
            else:
                youtube_meta[info["split"]][name] = info.pop("meta")
                world_info["youtube"][name] = info
            frames += count
            bar.update(1)
        bar.close()
        if coco_job is not None:
            coco_job.get()
            pool.close()
            pool.join()
            pool = None
        else:
            _export_coco(*coco_args)

        for split, names in split_names.items():
            (tmp / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
            (tmp / "ImageSets" / "2017" / f"{split}.txt").write_text("".join(n + "\n" for n in names))
        for split in ("train", "val"):
            (tmp / "ImageSets" / "2016").mkdir(parents=True, exist_ok=True)
            (tmp / "ImageSets" / "2016" / f"{split}.txt").write_text("".join(n + "\n" for n in split_names[split]))
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
        if pool is not None:
            pool.terminate()
            pool.join()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    splits = {k: len(v) for k, v in split_names.items()}
    if youtube:
        splits.update({"youtube-train": sizes.youtube_train, "youtube-valid": sizes.youtube_valid})
    splits.update({"coco-train images": sizes.coco_train, "coco-val images": sizes.coco_val})
    return WorldSummary(out=out, videos=len(plan) + len(youtube_plan), frames=frames,
                        bytes_on_disk=directory_size(out), seconds=time.time() - start, splits=splits)
