"""Evaluation-side readers: one small ``Sequence`` interface over DAVIS, YouTube-VOS, a folder of frames, a video file.

A semi-supervised VOS run (§4, "Inference") needs, per video: the frames in time order, the
frames at which masks are *given* together with the object ids that *start* there (DAVIS: all
objects at frame 0; YouTube-VOS: objects that first appear mid-video get their mask at that
frame), the frames whose predictions must be written, and, for scoring, the ground truth.

``Sequence`` holds exactly that:

    seq.name, len(seq), seq.frame_names            # frame names without extension, time order
    seq.read_frame(i) -> (H, W, 3) uint8 RGB
    seq.start_objects -> {frame index: [object ids first given there]}
    seq.read_given_mask(i) -> (H, W) uint8 ids, only the objects that start at i
    seq.output_indices                              # frames to write (DAVIS: all; YouTube: every 5th)
    seq.gt_indices, seq.read_gt(i)                  # full ground truth where available

Constructors: :func:`davis_sequences`, :func:`youtube_sequences`, :func:`folder_sequence`,
:func:`video_sequence`. Frame lists are sorted by the number in the file name (so ``2.jpg``
comes before ``10.jpg``); names without a number, duplicate numbers, missing annotations,
empty folders and size mismatches are refused with a message that names the file.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import cv2
import numpy as np

from isvos_lite.data.palette import check_same_size, read_annotation, read_frame, read_mask

__all__ = [
    "FRAME_EXTENSIONS",
    "Sequence",
    "VideoFileSequence",
    "numeric_sorted",
    "list_frames",
    "davis_sequences",
    "youtube_sequences",
    "folder_sequence",
    "video_sequence",
]

FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
_NUMBER = re.compile(r"(\d+)(?!.*\d)")   # the last run of digits in a name


def numeric_sorted(paths: list[Path], what: str = "frame") -> list[Path]:
    """Sort files by the last number in their stem; refuse names without a number or with duplicates."""
    keyed = []
    for path in paths:
        match = _NUMBER.search(path.stem)
        if match is None:
            raise ValueError(
                f"{what} {path} has no frame number in its name; name frames by their index, e.g. 00000.jpg, 00001.jpg "
                "(so that the time order is unambiguous)")
        keyed.append((int(match.group(1)), path))
    keyed.sort(key=lambda item: item[0])
    for (n1, p1), (n2, p2) in zip(keyed, keyed[1:]):
        if n1 == n2:
            raise ValueError(f"{what}s {p1} and {p2} have the same frame number {n1}; rename them so each frame has its own index")
    return [p for _, p in keyed]


def list_frames(folder: str | os.PathLike, what: str = "frame", extensions=FRAME_EXTENSIONS) -> list[Path]:
    """Image files of a folder in time order, with clear errors for missing / empty folders."""
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"{what} folder {folder} does not exist; check the path")
    if not folder.is_dir():
        raise NotADirectoryError(f"{what} folder {folder} is not a folder")
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in extensions and not p.name.startswith(".")]
    if not files:
        raise ValueError(f"{what} folder {folder} has no image files ({', '.join(extensions)}); is it the right folder?")
    return numeric_sorted(files, what)


class Sequence:
    """One video: frames in time order, given masks with their starting objects, outputs and ground truth."""

    def __init__(self, name: str, frame_paths: list[Path], given_mask_paths: dict[int, Path] | None = None,
                 start_objects: dict[int, list[int]] | None = None, gt_paths: dict[int, Path] | None = None,
                 output_indices: list[int] | None = None, merge_objects: bool = False):
        self.name = name
        self.frame_paths = list(frame_paths)
        self.given_mask_paths = dict(given_mask_paths or {})
        self.gt_paths = dict(gt_paths or {})
        self.output_indices = list(range(len(self))) if output_indices is None else list(output_indices)
        self.merge_objects = merge_objects          # DAVIS 2016: all objects are one foreground
        self._start_objects = start_objects
        self._size: tuple[int, int] | None = None

    # frames -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.frame_paths)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, frames={len(self)}, given masks at "
                f"{sorted(self.given_mask_paths)}, gt frames={len(self.gt_paths)})")

    @property
    def frame_names(self) -> list[str]:
        return [p.stem for p in self.frame_paths]

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the frames (read from frame 0 once)."""
        if self._size is None:
            self._size = self.read_frame(0, check_size=False).shape[:2]
        return self._size

    def read_frame(self, index: int, check_size: bool = True) -> np.ndarray:
        """(H, W, 3) uint8 RGB frame ``index``."""
        frame = read_frame(self.frame_paths[index])
        if check_size and frame.shape[:2] != self.size:
            raise ValueError(f"frame {self.frame_paths[index]} is {frame.shape[1]}x{frame.shape[0]} but the video's first frame "
                             f"is {self.size[1]}x{self.size[0]}; all frames of a video must have one size")
        return frame

    # masks ------------------------------------------------------------------------------
    def _read_ids(self, path: Path) -> np.ndarray:
        if self.merge_objects:
            # DAVIS 2016: one foreground = every non-zero pixel, as the scorer reads it. This accepts the original
            # 2016 release's 0/255 greyscale masks as well as 2017 palette masks (whose ids are merged).
            mask = (read_annotation(path) != 0).astype(np.uint8)
        else:
            mask = read_mask(path)
        if mask.shape != tuple(self.size):
            check_same_size(np.empty(tuple(self.size) + (3,)), mask, self._frame_label(path), path)
        return mask

    def _frame_label(self, mask_path: Path) -> str:
        names = self.frame_names
        # a mask named like a frame belongs to it; the single first-frame mask (any name) to the first frame
        return str(self.frame_paths[names.index(mask_path.stem) if mask_path.stem in names else 0])

    @property
    def start_objects(self) -> dict[int, list[int]]:
        """{frame index: object ids first given at that frame}, computed from the given masks if not known."""
        if self._start_objects is None:
            seen: set[int] = set()
            starts: dict[int, list[int]] = {}
            for index in sorted(self.given_mask_paths):
                ids = [int(i) for i in np.unique(self._read_ids(self.given_mask_paths[index])) if i != 0]
                new = [i for i in ids if i not in seen]
                if new:
                    starts[index] = new
                    seen.update(new)
            if not starts:
                first = self.given_mask_paths[min(self.given_mask_paths)] if self.given_mask_paths else None
                raise ValueError(f"sequence {self.name}: the given mask {first} has no objects (all background); "
                                 "draw at least one object with a non-zero id")
            self._start_objects = starts
        return self._start_objects

    @property
    def object_ids(self) -> list[int]:
        return sorted(i for ids in self.start_objects.values() for i in ids)

    def read_given_mask(self, index: int) -> np.ndarray:
        """(H, W) uint8 ids at frame ``index`` keeping only the objects that start there."""
        if index not in self.given_mask_paths:
            raise ValueError(f"sequence {self.name}: no mask is given at frame {index} ({self.frame_names[index]}); "
                             f"masks are given at {sorted(self.given_mask_paths)}")
        mask = self._read_ids(self.given_mask_paths[index])
        keep = self.start_objects.get(index, [])
        return np.where(np.isin(mask, keep), mask, 0).astype(np.uint8)

    @property
    def gt_indices(self) -> list[int]:
        return sorted(self.gt_paths)

    def read_gt(self, index: int) -> np.ndarray:
        """(H, W) uint8 ground-truth ids at frame ``index`` (all objects)."""
        if index not in self.gt_paths:
            raise ValueError(f"sequence {self.name}: no ground truth for frame {index}; it exists for {len(self.gt_paths)} frames")
        return self._read_ids(self.gt_paths[index])


class VideoFileSequence(Sequence):
    """A video file (mp4, avi, ...) read with OpenCV; frames are decoded in order and cached one at a time."""

    def __init__(self, video_path: Path, name: str, given_mask_paths: dict[int, Path]):
        self.video_path = Path(video_path)
        capture = cv2.VideoCapture(str(self.video_path))
        if not capture.isOpened():
            raise ValueError(f"video {self.video_path} cannot be opened by OpenCV; is it a video file (mp4/avi/mov)? "
                             "Re-encode it, e.g. `ffmpeg -i in.xxx -c:v libx264 out.mp4`, or extract frames to a folder")
        count = 0
        while capture.grab():
            count += 1
        capture.release()
        if count == 0:
            raise ValueError(f"video {self.video_path} has no decodable frames; re-encode it or extract frames to a folder")
        self._count = count
        self._capture: cv2.VideoCapture | None = None
        self._next_index = 0
        super().__init__(name, [Path(f"{t:05d}.jpg") for t in range(count)], given_mask_paths)

    def __len__(self) -> int:
        return self._count

    @property
    def fps(self) -> float:
        capture = cv2.VideoCapture(str(self.video_path))
        fps = capture.get(cv2.CAP_PROP_FPS)
        capture.release()
        return float(fps) if fps and fps > 0 else 24.0

    def read_frame(self, index: int, check_size: bool = True) -> np.ndarray:
        if not 0 <= index < self._count:
            raise IndexError(f"video {self.video_path} has {self._count} frames, asked for frame {index}")
        if self._capture is None or index != self._next_index:
            if self._capture is not None:
                self._capture.release()
            self._capture = cv2.VideoCapture(str(self.video_path))
            for _ in range(index):          # seeking by frame number is unreliable in many codecs; decode forward
                self._capture.grab()
        ok, bgr = self._capture.read()
        if not ok:
            raise ValueError(f"video {self.video_path}: frame {index} could not be decoded; re-encode the video")
        self._next_index = index + 1
        frame = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        if check_size and self._size is not None and frame.shape[:2] != self._size:
            raise ValueError(f"video {self.video_path}: frame {index} changes size; re-encode the video")
        return frame

    def _frame_label(self, mask_path: Path) -> str:
        return f"0 of {self.video_path}"            # "its frame 0 of VIDEO is WxH"

    def __del__(self):
        if getattr(self, "_capture", None) is not None:
            self._capture.release()


# --------------------------------------------------------------------------------------
# DAVIS
# --------------------------------------------------------------------------------------

def davis_sequences(root: str | os.PathLike, split: str = "val", year: int | str = 2017, resolution: str = "480p",
                    names: list[str] | None = None, require_all_masks: bool | None = None) -> list[Sequence]:
    """Sequences of a DAVIS split (``ImageSets/<year>/<split>.txt``).

    ``year=2016`` merges all objects into one (the single-object task). ``resolution`` is
    ``"480p"`` or ``"Full-Resolution"``. Every frame must have its annotation (the official
    evaluation's layout) unless ``require_all_masks=False`` (default for test-dev / test-challenge,
    which only give frame 0).
    """
    root = Path(root)
    year = str(year)
    if not root.exists():
        raise FileNotFoundError(f"DAVIS root {root} does not exist; download DAVIS 2017 (see data/README.md) "
                                "or generate the teaching world with `isvos-lite toy-data --out DIR`")
    if resolution not in ("480p", "Full-Resolution"):
        raise ValueError(f"resolution must be '480p' or 'Full-Resolution', got {resolution!r}")
    if year not in ("2016", "2017"):
        raise ValueError(f"DAVIS year must be 2016 or 2017, got {year}")
    if require_all_masks is None:
        require_all_masks = not split.startswith("test")
    if names is None:
        list_file = root / "ImageSets" / year / f"{split}.txt"
        if not list_file.exists():
            available = sorted(p.stem for p in (root / "ImageSets" / year).glob("*.txt")) if (root / "ImageSets" / year).is_dir() else []
            raise FileNotFoundError(f"DAVIS split list {list_file} does not exist; available splits for {year}: "
                                    f"{', '.join(available) or 'none (is this a DAVIS root?)'}")
        names = [line.strip() for line in list_file.read_text().splitlines() if line.strip()]
        if not names:
            raise ValueError(f"DAVIS split list {list_file} is empty")
    sequences = []
    for name in names:
        frame_dir = root / "JPEGImages" / resolution / name
        mask_dir = root / "Annotations" / resolution / name
        frames = list_frames(frame_dir, "frame", extensions=(".jpg", ".jpeg", ".png"))
        if not mask_dir.is_dir():
            raise FileNotFoundError(f"annotation folder {mask_dir} does not exist; DAVIS needs Annotations/{resolution}/{name}/ "
                                    "with a palette PNG per frame (at least the first)")
        masks = {p.stem: p for p in mask_dir.glob("*.png")}
        first = frames[0].stem
        if first not in masks:
            raise ValueError(f"first-frame annotation {mask_dir / (first + '.png')} is missing; the first frame of every "
                             "sequence needs a mask (palette PNG, pixel = object id)")
        frame_stems = {p.stem for p in frames}
        orphans = sorted(set(masks) - frame_stems)
        if orphans:
            raise ValueError(f"annotation {mask_dir / (orphans[0] + '.png')} has no frame {frame_dir / (orphans[0] + '.jpg')}; "
                             "mask and frame names must match")
        gt = {}
        for index, frame in enumerate(frames):
            if frame.stem in masks:
                gt[index] = masks[frame.stem]
            elif require_all_masks:
                raise ValueError(f"annotation {mask_dir / (frame.stem + '.png')} is missing: every frame of a DAVIS "
                                 f"{split} sequence needs its mask (for test-dev pass require_all_masks=False)")
        sequences.append(Sequence(name, frames, given_mask_paths={0: gt[0]}, gt_paths=gt,
                                  merge_objects=(year == "2016")))
    return sequences


# --------------------------------------------------------------------------------------
# YouTube-VOS
# --------------------------------------------------------------------------------------

def youtube_sequences(root: str | os.PathLike, split: str = "valid", all_frames: bool = True,
                      names: list[str] | None = None) -> list[Sequence]:
    """Sequences of a YouTube-VOS split (``<root>/<split>/meta.json``); objects may start mid-video.

    With ``all_frames`` the frames come from ``<root>/<split>_all_frames/JPEGImages`` (30 fps, the
    usual protocol, peers.md §5.4) and the outputs are still the every-5th frames of
    ``<root>/<split>/JPEGImages``. Ground truth: ``<split>/Annotations`` for train; for valid the
    teaching world also writes ``valid_gt/Annotations`` (the official valid set has none).
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"YouTube-VOS root {root} does not exist; see data/README.md")
    meta_path = root / split / "meta.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"YouTube-VOS meta file {meta_path} does not exist; the root must contain {split}/meta.json")
    try:
        meta = json.loads(meta_path.read_text())["videos"]
    except (json.JSONDecodeError, KeyError) as err:
        raise ValueError(f"YouTube-VOS meta file {meta_path} is not a valid meta.json ({err})") from err
    names = sorted(meta) if names is None else names
    sequences = []
    for name in names:
        if name not in meta:
            raise ValueError(f"video {name} is not listed in {meta_path}")
        sparse_dir = root / split / "JPEGImages" / name
        sparse = list_frames(sparse_dir, "frame", extensions=(".jpg", ".jpeg"))
        if all_frames:
            dense_dir = root / f"{split}_all_frames" / "JPEGImages" / name
            if not dense_dir.is_dir():
                raise FileNotFoundError(f"all-frames folder {dense_dir} does not exist; download {split}_all_frames or pass all_frames=False")
            frames = list_frames(dense_dir, "frame", extensions=(".jpg", ".jpeg"))
        else:
            frames = sparse
        index_of = {p.stem: i for i, p in enumerate(frames)}
        missing = [p.stem for p in sparse if p.stem not in index_of]
        if missing:
            raise ValueError(f"frame {sparse_dir / (missing[0] + '.jpg')} is not among the all-frames of {name}; the two folders disagree")
        output_indices = [index_of[p.stem] for p in sparse]

        ann_dir = root / split / "Annotations" / name
        if not ann_dir.is_dir():
            raise FileNotFoundError(f"annotation folder {ann_dir} does not exist")
        given = {}
        for mask_path in numeric_sorted(list(ann_dir.glob("*.png")), "mask"):
            if mask_path.stem not in index_of:
                raise ValueError(f"annotation {mask_path} has no frame of the same name in {frames[0].parent}")
            given[index_of[mask_path.stem]] = mask_path
        if not given:
            raise ValueError(f"annotation folder {ann_dir} is empty; YouTube-VOS needs the masks of the frames where objects first appear")
        starts: dict[int, list[int]] = {}
        for object_id, info in meta[name].get("objects", {}).items():
            first_name = min(info["frames"], key=int) if info.get("frames") else None
            if first_name is None:
                continue
            if first_name not in index_of:
                raise ValueError(f"{meta_path}: object {object_id} of {name} starts at frame {first_name}, which is not a frame of the video")
            first_index = index_of[first_name]
            if first_index not in given:
                raise ValueError(f"{meta_path}: object {object_id} of {name} starts at frame {first_name} but "
                                 f"{ann_dir / (first_name + '.png')} is missing")
            starts.setdefault(first_index, []).append(int(object_id))
        starts = {k: sorted(v) for k, v in sorted(starts.items())}
        if split == "train":
            gt = dict(given)
        else:
            gt_dir = root / f"{split}_gt" / "Annotations" / name
            gt = {index_of[p.stem]: p for p in gt_dir.glob("*.png") if p.stem in index_of} if gt_dir.is_dir() else {}
        sequences.append(Sequence(name, frames, given_mask_paths=given, start_objects=starts or None,
                                  gt_paths=gt, output_indices=output_indices))
    return sequences


# --------------------------------------------------------------------------------------
# your own data
# --------------------------------------------------------------------------------------

def _given_masks_for(mask: Path, frames_names: list[str], what: str) -> dict[int, Path]:
    mask = Path(mask)
    if not mask.exists():
        raise FileNotFoundError(f"mask {mask} does not exist; give a palette PNG of the first frame (pixel = object id)")
    if mask.is_dir():
        files = numeric_sorted(list(mask.glob("*.png")), "mask")
        if not files:
            raise ValueError(f"mask folder {mask} has no PNG files")
        given = {}
        for path in files:
            if path.stem not in frames_names:
                raise ValueError(f"mask {path} has no frame named {path.stem} in {what}; name each mask like its frame")
            given[frames_names.index(path.stem)] = path
        return given
    return {0: mask}


def folder_sequence(frames_dir: str | os.PathLike, mask: str | os.PathLike, name: str | None = None) -> Sequence:
    """Your own frames (a folder of images) + a first-frame mask PNG, or a folder of masks named like their frames."""
    frames = list_frames(frames_dir)
    seq = Sequence(name or Path(frames_dir).resolve().name, frames,
                   given_mask_paths=_given_masks_for(Path(mask), [p.stem for p in frames], str(frames_dir)))
    seq.start_objects   # validate the masks now (format, size, not empty)
    return seq


def video_sequence(video: str | os.PathLike, mask: str | os.PathLike, name: str | None = None) -> VideoFileSequence:
    """A video file (mp4 via OpenCV) + a first-frame mask PNG (or a folder of masks named 00000.png, ...)."""
    video = Path(video)
    if not video.exists():
        raise FileNotFoundError(f"video {video} does not exist; check the path")
    if video.is_dir():
        raise ValueError(f"video {video} is a folder; for a folder of frames use --frames / folder_sequence")
    if video.stat().st_size == 0:
        raise ValueError(f"video {video} is an empty (zero-byte) file")
    seq = VideoFileSequence(video, name or video.stem, {})
    seq.given_mask_paths = _given_masks_for(Path(mask), seq.frame_names, str(video))
    seq.start_objects
    return seq
