"""Run a :class:`~isvos_lite.inference.VideoSegmenter` over one :class:`~isvos_lite.data.sequences.Sequence`.

The paper's inference protocol (§4.1, "Inference") lives in the segmenter; this module is the loop around it
that the ``predict``, ``eval`` and ``demo`` commands share:

* frames are read one at a time (a 2,000-frame video never sits in memory);
* masks are given where objects *start* (``seq.start_objects``): all objects at frame 0 for DAVIS, objects
  that first appear mid-video at their first frame for YouTube-VOS. Frames before the first given mask
  have no object to track and are written as background, as the YouTube-VOS protocol expects;
* only the frames of ``seq.output_indices`` are returned / written (DAVIS: all; YouTube-VOS: the frames
  listed in ``meta.json``), as DAVIS palette PNGs with the *original* object ids, at the frame's size;
* a sequence is written into a hidden temporary folder next to its final place and renamed into place only
  when every frame is written, so a crashed or interrupted run never leaves a half-written sequence
  folder; a folder that is already complete is skipped (resumable runs);
* a written folder holds a manifest of its masks (``isvos_lite.outputs.Manifest``): replacing a result
  (``overwrite``) replaces only those masks. Files the user added to the folder are kept, and a folder holding
  anything else that no manifest accounts for is refused, never emptied.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from isvos_lite.data.palette import read_mask, write_mask
from isvos_lite.data.sequences import Sequence
from isvos_lite.inference import VideoSegmenter
from isvos_lite.outputs import MANIFEST_NAME, Manifest

__all__ = ["iter_segmentation", "segment_sequence", "segment_to_folder", "output_file_names",
           "folder_is_complete", "read_sequence_masks", "tracked_starts", "PARTIAL_MARKER"]

PARTIAL_MARKER = ".partial-"     # hidden work folders: .<name>.partial-XXXX next to the final folder

# called for every output frame: (frame index, frame (H, W, 3) uint8, mask (H, W) uint8)
FrameCallback = Callable[[int, np.ndarray, np.ndarray], None]


def iter_segmentation(model, seq: Sequence, progress: bool = True, objects: list[int] | None = None,
                      **segmenter_kwargs) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield ``(frame index, frame (H, W, 3) uint8 RGB, mask (H, W) uint8 ids)`` for every frame, in order.

    The mask of a frame where objects start holds those objects exactly as given (§4.1: the first frame's
    mask is returned as given); other frames hold the prediction. ``objects`` tracks only these ids of the
    given masks (each must be in one). ``segmenter_kwargs`` go to :class:`VideoSegmenter` (``mem_every``,
    ``max_memory_frames``, ``top_k``, ``device``, ``amp``, ``flip``, ``scales``, ``tta``, ``max_internal_size``).
    """
    starts = tracked_starts(seq, objects)          # {frame index: [ids]}
    first_given = min(starts)
    segmenter = VideoSegmenter(model, **segmenter_kwargs)
    with tqdm(total=len(seq), desc=seq.name, unit="frame", leave=False, disable=not progress) as bar:
        for index in range(len(seq)):
            frame = seq.read_frame(index)                                     # (H, W, 3) uint8
            if index < first_given:
                mask = np.zeros(frame.shape[:2], np.uint8)                    # nothing to track yet: background
            else:
                given = None
                if index in starts:
                    given = seq.read_given_mask(index)                        # (H, W) ids starting here
                    given = np.where(np.isin(given, starts[index]), given, 0).astype(np.uint8)
                probs = segmenter.step(frame, given, objects=starts.get(index))   # (1 + O, H, W)
                mask = segmenter.probs_to_mask(probs)                         # (H, W) original ids
            bar.update(1)
            yield index, frame, mask


def tracked_starts(seq: Sequence, objects: list[int] | None = None) -> dict[int, list[int]]:
    """{frame index: ids that start there}, restricted to ``objects`` when given (clear error for unknown ids)."""
    starts = seq.start_objects                     # reading it validates the given masks (format, size, not empty)
    if objects is None:
        return starts
    known = sorted(i for ids in starts.values() for i in ids)
    unknown = [i for i in objects if i not in known]
    if unknown:
        where = "the first frame's mask" if len(starts) == 1 else "the given masks"
        raise ValueError(f"object id(s) {unknown} are not in {where} of {seq.name} (it holds ids {known}); "
                         f"pass only ids that are drawn in the mask")
    restricted = {t: [i for i in ids if i in objects] for t, ids in starts.items()}
    return {t: ids for t, ids in restricted.items() if ids}


def output_file_names(seq: Sequence) -> list[str]:
    """The PNG file names a finished sequence folder holds: ``<frame name>.png`` for each output frame."""
    names = seq.frame_names
    return [f"{names[i]}.png" for i in seq.output_indices]


def folder_is_complete(folder: str | os.PathLike, seq: Sequence) -> bool:
    """True when ``folder`` holds exactly the PNGs of ``seq``'s output frames (no more, no fewer)."""
    folder = Path(folder)
    if not folder.is_dir():
        return False
    manifest = Manifest.read(folder)
    if manifest is not None and not manifest.complete:       # caught half-way through a replacement
        return False
    present = {p.name for p in folder.iterdir() if p.suffix == ".png" and not p.name.startswith(".")}
    return present == set(output_file_names(seq))


def read_sequence_masks(folder: str | os.PathLike, seq: Sequence) -> dict[int, np.ndarray]:
    """{frame index: (H, W) uint8 ids} read back from a finished sequence folder."""
    folder = Path(folder)
    names = seq.frame_names
    return {i: read_mask(folder / f"{names[i]}.png", allow_many_ids=True) for i in seq.output_indices}


def segment_sequence(model, seq: Sequence, out_dir: str | os.PathLike | None = None, *, overwrite: bool = False,
                     progress: bool = True, keep_masks: bool = True, on_frame: FrameCallback | None = None,
                     objects: list[int] | None = None, **segmenter_kwargs) -> dict[int, np.ndarray]:
    """Segment ``seq``; returns {frame index: (H, W) uint8 mask with the original ids} for its output frames.

    With ``out_dir``, the masks are also written to ``<out_dir>/<seq.name>/<frame name>.png`` (atomically per
    sequence, see the module docstring). A complete folder is not recomputed unless ``overwrite``: its masks
    are read back instead (and ``on_frame`` is not called). ``keep_masks=False`` returns an empty dict, for
    long videos whose masks should only go to disk. ``on_frame(index, frame, mask)`` is called for every
    output frame as it is produced (e.g. an overlay video writer). ``objects``: track only these ids.
    """
    if out_dir is None:
        masks: dict[int, np.ndarray] = {}
        wanted = set(seq.output_indices)
        for index, frame, mask in iter_segmentation(model, seq, progress=progress, objects=objects,
                                                     **segmenter_kwargs):
            if index in wanted:
                if keep_masks:
                    masks[index] = mask
                if on_frame is not None:
                    on_frame(index, frame, mask)
        return masks
    return segment_to_folder(model, seq, Path(out_dir) / seq.name, overwrite=overwrite, progress=progress,
                             keep_masks=keep_masks, on_frame=on_frame, objects=objects, **segmenter_kwargs)


def segment_to_folder(model, seq: Sequence, folder: str | os.PathLike, *, overwrite: bool = False,
                      progress: bool = True, keep_masks: bool = True, on_frame: FrameCallback | None = None,
                      objects: list[int] | None = None, **segmenter_kwargs) -> dict[int, np.ndarray]:
    """Like :func:`segment_sequence` but writes the PNGs directly into ``folder`` (``folder/<frame>.png``).

    ``folder`` may not exist yet, be empty, or hold a complete earlier result (skipped unless ``overwrite``).
    Otherwise it must hold an earlier result of isvos-lite (its manifest, or only ``<frame>.png`` masks of this
    sequence): with ``overwrite`` (or when that result was left unfinished) its masks are replaced once the new
    result is complete, and files the manifest does not list are kept. Anything else is refused.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"output {folder} exists and is a file; pass a folder for the masks")
    if not overwrite and folder_is_complete(folder, seq):
        return read_sequence_masks(folder, seq) if keep_masks else {}
    own, foreign = _own_and_foreign(folder, seq)
    if foreign is None:
        raise ValueError(f"output folder {folder} holds files not written by isvos-lite (e.g. "
                         f"{', '.join(_entries(folder)[:3])}); nothing there is replaced or deleted: choose an empty "
                         f"or new output folder, or move those files away")
    clash = sorted(set(foreign) & set(output_file_names(seq)))
    if clash:
        raise ValueError(f"output folder {folder} holds {clash[0]}, which isvos-lite did not write and would have "
                         f"to replace; choose an empty or new output folder, or move that file away")
    manifest = Manifest.read(folder)
    if own and not overwrite and (manifest is None or manifest.complete):
        raise ValueError(f"output folder {folder} holds an earlier result that is not a complete result for "
                         f"{seq.name} ({len(output_file_names(seq))} frames); choose another output folder, or "
                         f"pass --overwrite to replace its masks (files you added there are kept)")

    folder.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_work_folders(folder)
    work = Path(tempfile.mkdtemp(prefix=f".{folder.name}{PARTIAL_MARKER}", dir=folder.parent))
    try:
        names = seq.frame_names
        wanted = set(seq.output_indices)
        masks: dict[int, np.ndarray] = {}
        for index, frame, mask in iter_segmentation(model, seq, progress=progress, objects=objects,
                                                     **segmenter_kwargs):
            if index not in wanted:
                continue
            write_mask(work / f"{names[index]}.png", mask)
            if keep_masks:
                masks[index] = mask
            if on_frame is not None:
                on_frame(index, frame, mask)
        os.chmod(work, 0o777 & ~_current_umask())       # mkdtemp makes 0700 folders; give the usual permissions
        written = output_file_names(seq)
        if foreign:
            _merge_into_place(work, folder, own, written)
        else:
            Manifest("segment", written).write(work)
            _move_into_place(work, folder)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return masks


# ---------------------------------------------------------------------------------------------- helpers
def _remove_stale_work_folders(folder: Path) -> None:
    """Delete work folders of this output left behind by a run that was killed (they are never results)."""
    for stale in folder.parent.glob(f".{folder.name}{PARTIAL_MARKER}*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)


def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def _own_and_foreign(folder: Path, seq: Sequence) -> tuple[list[str], list[str] | None]:
    """(entries isvos-lite wrote, entries it did not) of ``folder``; foreign is None when nothing says what is ours.

    Ours: what the folder's manifest lists, or, for a folder written before manifests existed, ``<frame>.png``
    masks of this sequence when the folder holds nothing else.
    """
    entries = _entries(folder)
    if not entries:
        return [], []
    manifest = Manifest.read(folder)
    if manifest is not None:
        listed = set(manifest.files) | {MANIFEST_NAME}
        return [e for e in entries if e in listed], [e for e in entries if e not in listed]
    outputs = set(output_file_names(seq))
    if all(e in outputs for e in entries):
        return entries, []
    return [], None


def _merge_into_place(work: Path, folder: Path, own: list[str], written: list[str]) -> None:
    """Move the finished masks of ``work`` into ``folder`` beside files the user added there, which stay.

    The manifest says "incomplete" while files move, so a run killed half-way is redone, never taken as finished.
    """
    Manifest("segment", sorted((set(own) - {MANIFEST_NAME}) | set(written)), complete=False).write(folder)
    for name in written:
        os.replace(work / name, folder / name)
    for name in set(own) - set(written) - {MANIFEST_NAME}:
        (folder / name).unlink(missing_ok=True)
    Manifest("segment", written).write(folder)
    shutil.rmtree(work, ignore_errors=True)


def _move_into_place(work: Path, folder: Path) -> None:
    """Rename the finished ``work`` folder to ``folder``; an existing ``folder`` is swapped out, then deleted."""
    if folder.is_dir() and any(folder.iterdir()):
        old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-", dir=folder.parent))
        os.replace(folder, old / "previous")
        os.replace(work, folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        if folder.is_dir():
            folder.rmdir()                               # an empty folder: replace it
        os.replace(work, folder)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
