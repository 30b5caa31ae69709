"""``isvos-lite eval --checkpoint CKPT (--davis ROOT | --youtube ROOT) --out DIR [--split S] [--year 2017|2016]``

Runs a checkpoint over a benchmark split with the paper's inference protocol (§4.1) and scores it
(Tables 1, 2: J&F, J-Mean, F-Mean):

* ``--davis ROOT``: DAVIS 2017 (multi-object) or, with ``--year 2016``, DAVIS 2016 (all objects one foreground).
  Palette PNGs go to ``DIR/<sequence>/<frame>.png`` (the official results layout), then the official J&F
  protocol (:func:`isvos_lite.eval.scorer.score_results`) writes ``global_results-<split>.csv``,
  ``per-sequence_results-<split>.csv`` and ``per-frame_results-<split>.csv`` into ``DIR``. Test splits
  (no full ground truth) are only segmented. Beside the model's J&F it prints the J&F of copying the
  first frame's mask to every frame (:mod:`isvos_lite.eval.baselines`, the same scorer and sequences;
  its CSVs in ``DIR/copy_baseline/``), and ``run.json`` records both (``results``, ``copy_baseline``).
* ``--youtube ROOT``: YouTube-VOS (``ROOT/<split>/meta.json``). Frames are propagated through
  ``<split>_all_frames`` when it exists (the usual protocol, as XMem's YouTube-VOS evaluation); masks are written only for the
  frames listed in ``meta.json``, at the original size with the original ids, in the submission layout
  ``DIR/Annotations/<video>/<frame>.png``, and zipped to ``DIR/submission.zip`` for the evaluation server.

Runs are resumable: each sequence folder is written atomically, and a rerun with the same checkpoint and
options skips the sequences already finished. ``DIR/run.json`` records what produced the folder; a rerun
with another checkpoint or other options is refused (``--overwrite`` recomputes everything), so results of
two runs are never mixed into one score.

What the user owns is never touched: an ``--out`` that is, holds or lies inside the dataset is refused whatever
the options; a non-empty ``DIR`` without ``run.json`` is not eval's and is refused (``--overwrite`` included);
``--overwrite`` replaces only the masks eval wrote (each sequence folder's manifest) and keeps other files; and
one run at a time writes ``DIR`` (a second fails at once, naming the first; ``isvos_lite.outputs``).
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
import zipfile
from pathlib import Path

from isvos_lite.commands.predict import (add_segmenter_arguments, check_frame_sizes, internal_size_note,
                                         segmenter_options)
from isvos_lite.atomic import atomic_path, atomic_write_text
from isvos_lite.outputs import check_apart, output_lock
from isvos_lite.threads import use_threads

RUN_RECORD = "run.json"
SUBMISSION_ZIP = "submission.zip"
COPY_BASELINE_DIR = "copy_baseline"     # CSVs of the copy-the-first-mask baseline on the same sequences


def add_arguments(parser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="CKPT",
                        help="weights (.safetensors with its .json), e.g. checkpoints/lite.safetensors")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--davis", metavar="ROOT", help="DAVIS folder (JPEGImages/, Annotations/, ImageSets/)")
    source.add_argument("--youtube", metavar="ROOT", help="YouTube-VOS folder (<split>/meta.json, JPEGImages/, ...)")
    parser.add_argument("--out", required=True, metavar="DIR", help="results folder (masks, CSVs, run.json)")
    parser.add_argument("--split", default=None, help="split (default: val for DAVIS, valid for YouTube-VOS)")
    parser.add_argument("--year", type=int, choices=(2016, 2017), default=2017,
                        help="DAVIS task: 2017 multi-object (default) or 2016 single-object")
    parser.add_argument("--resolution", default="480p", help="DAVIS resolution folder (default: 480p)")
    parser.add_argument("--sequences", nargs="+", default=None, metavar="SEQ",
                        help="only these sequences / videos instead of the whole split")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="processes for scoring (default: min(4, CPU count))")
    parser.add_argument("--no-score", action="store_true", help="DAVIS: only write the masks, do not score")
    parser.add_argument("--overwrite", action="store_true",
                        help="recompute every sequence even if DIR holds finished results")
    add_segmenter_arguments(parser)


def run(args) -> int:
    from isvos_lite.checkpoint import load_checkpoint, read_checkpoint_config
    from isvos_lite.inference import precision_note

    options = segmenter_options(args)
    print(use_threads(args.threads))
    print(precision_note(args.amp, args.device))
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} exists and is a file; pass a folder")
    dataset = "davis" if args.davis else "youtube"
    split = args.split or ("val" if dataset == "davis" else "valid")
    check_apart(out, "--out", {f"--{dataset}": args.davis or args.youtube})

    # read and check the whole split before loading the model or writing anything
    if dataset == "davis":
        sequences = _davis_split(args, split)
    else:
        sequences = _youtube_split(args, split)
    read_checkpoint_config(args.checkpoint)                        # clear errors for a missing / foreign checkpoint
    record = {
        "dataset": dataset, "root": str(Path(args.davis or args.youtube).resolve()), "split": split,
        "year": args.year if dataset == "davis" else None,
        "checkpoint": str(Path(args.checkpoint).resolve()), "checkpoint_sha256": _sha256(Path(args.checkpoint)),
        "segmenter": {k: (list(v) if isinstance(v, tuple) else v) for k, v in options.items() if k != "device"},
    }
    with output_lock(out, "eval"):
        _check_run_record(out, record, args.overwrite)
        model = load_checkpoint(args.checkpoint, map_location=options["device"])
        _write_json(out / RUN_RECORD, record)
        masks_root = out if dataset == "davis" else out / "Annotations"
        seconds, frames = _segment_all(model, sequences, masks_root, options, args.overwrite)
        return _finish(args, out, dataset, split, sequences, masks_root, seconds, frames, record)


def _finish(args, out: Path, dataset: str, split: str, sequences, masks_root: Path, seconds: float,
            frames: int, record: dict) -> int:
    """Report, zip (YouTube-VOS) or score (DAVIS) the finished masks."""
    if frames:
        print(f"segmented {frames} frames of {len(sequences)} sequences in {seconds:.1f} s ({frames / seconds:.2f} fps)")
    print(f"masks: {masks_root}/<sequence>/<frame>.png")

    if dataset == "youtube":
        zip_path = _zip_submission(masks_root, out / SUBMISSION_ZIP, [s.name for s in sequences])
        print(f"wrote {zip_path} (Annotations/<video>/<frame>.png, original size and ids): upload it to the "
              "YouTube-VOS evaluation server")
        return 0
    if args.no_score or split.startswith("test"):
        print(f"not scored ({'--no-score' if args.no_score else 'a test split has no public ground truth'}); "
              f"score later with `isvos-lite score --davis {args.davis} --results {out} --split {split}`")
        return 0

    from isvos_lite.eval.scorer import csv_names, score_results

    start = time.perf_counter()
    result = score_results(args.davis, out, split=split, year=args.year, out_dir=out, workers=args.workers,
                           sequences=args.sequences, resolution=args.resolution)
    print(result.format_table())
    print(f"scored in {time.perf_counter() - start:.1f} s; "
          + ", ".join(str(out / name) for name in csv_names(split).values()))
    _report_copy_baseline(args, split, out, record, result)
    return 0


def _report_copy_baseline(args, split: str, out: Path, record: dict, result) -> None:
    """Score copying the first mask to every frame (isvos_lite.eval.baselines) and print it beside the model."""
    from isvos_lite.eval.baselines import copy_first_mask_score

    baseline = copy_first_mask_score(args.davis, split=split, year=args.year, sequences=args.sequences,
                                     resolution=args.resolution, out_dir=out / COPY_BASELINE_DIR,
                                     workers=args.workers)
    keys = ("J&F-Mean", "J-Mean", "F-Mean")
    model, copy = (result.global_metrics, baseline.global_metrics)
    print(f"copy-the-first-mask baseline on {split}: J&F {copy['J&F-Mean']:.3f} (J {copy['J-Mean']:.3f}, "
          f"F {copy['F-Mean']:.3f}); the model: J&F {model['J&F-Mean']:.3f} "
          f"({model['J&F-Mean'] - copy['J&F-Mean']:+.3f}); CSVs in {out / COPY_BASELINE_DIR}")
    record["results"] = {k: round(float(model[k]), 6) for k in keys}
    record["copy_baseline"] = {k: round(float(copy[k]), 6) for k in keys}
    _write_json(out / RUN_RECORD, record)


# ---------------------------------------------------------------------------------------------- datasets
def _davis_split(args, split: str):
    from isvos_lite.data.sequences import davis_sequences

    sequences = davis_sequences(args.davis, split=split, year=args.year, resolution=args.resolution,
                                names=args.sequences)
    for seq in sequences:
        seq.start_objects                                           # validate every first-frame mask now
        check_frame_sizes(seq)
    return sequences


def _youtube_split(args, split: str):
    """YouTube-VOS sequences whose outputs are exactly the frames that ``meta.json`` lists for their objects."""
    from isvos_lite.data.sequences import youtube_sequences

    root = Path(args.youtube)
    all_frames = (root / f"{split}_all_frames" / "JPEGImages").is_dir()
    if not all_frames:
        print(f"note: {root / (split + '_all_frames')} is missing: propagating through the every-5th frames only")
    sequences = youtube_sequences(root, split=split, all_frames=all_frames, names=args.sequences)
    meta = json.loads((root / split / "meta.json").read_text())["videos"]
    for seq in sequences:
        listed = {name for obj in meta[seq.name].get("objects", {}).values() for name in obj.get("frames", [])}
        names = seq.frame_names
        unknown = sorted(listed - set(names))
        if unknown:
            raise ValueError(f"{root / split / 'meta.json'}: video {seq.name} lists frame {unknown[0]}, which is not "
                             f"among its frames in {seq.frame_paths[0].parent}")
        seq.output_indices = [i for i in seq.output_indices if names[i] in listed]
        seq.start_objects
    return sequences


# ---------------------------------------------------------------------------------------------- running
def _segment_all(model, sequences, masks_root: Path, options: dict, overwrite: bool) -> tuple[float, int]:
    """Segment every sequence not already finished; returns (seconds, frames segmented)."""
    from tqdm.auto import tqdm

    from isvos_lite.eval.runner import folder_is_complete, segment_sequence

    todo = [s for s in sequences if overwrite or not folder_is_complete(masks_root / s.name, s)]
    if len(todo) < len(sequences):
        print(f"resuming: {len(sequences) - len(todo)} of {len(sequences)} sequences are already finished in {masks_root}")
    notes = {internal_size_note(s.size, options["max_internal_size"]) for s in todo} - {None}
    for note in sorted(notes):
        print(note)
    start, frames = time.perf_counter(), 0
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="frames are .*max_internal_size")   # said once above
        for seq in tqdm(todo, desc="eval", unit="seq"):
            segment_sequence(model, seq, masks_root, overwrite=overwrite, keep_masks=False, **options)
            frames += len(seq)
    return time.perf_counter() - start, frames


def _check_run_record(out: Path, record: dict, overwrite: bool) -> None:
    """Refuse a folder eval did not write (always) and the results of two different runs in one (unless --overwrite)."""
    if not out.is_dir() or not any(out.iterdir()):
        return
    path = out / RUN_RECORD
    if not path.is_file():
        raise ValueError(f"--out {out} is not empty and was not written by `isvos-lite eval` (no {RUN_RECORD}); "
                         "nothing there is replaced or deleted: choose an empty or new folder")
    if overwrite:
        return
    try:
        previous = json.loads(path.read_text())
    except json.JSONDecodeError:
        previous = {}
    changed = sorted(k for k in record if k != "checkpoint" and previous.get(k) != record[k])   # the file may move
    if changed:
        raise ValueError(f"--out {out} holds results of another run (different {', '.join(changed)}; see {path}); "
                         "choose a new folder or pass --overwrite to recompute every sequence")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_json(path: Path, data: dict) -> None:
    
    atomic_write_text(path, json.dumps(data, indent=2))


def _zip_submission(masks_root: Path, zip_path: Path, videos: list[str]) -> Path:
    """Zip ``Annotations/<video>/<frame>.png`` (the server's layout) atomically."""
    with atomic_path(zip_path) as temp:
        with zipfile.ZipFile(temp, "w", compression=zipfile.ZIP_STORED) as archive:   # PNGs are compressed already
            for video in sorted(videos):
                for png in sorted((masks_root / video).glob("*.png")):
                    archive.write(png, f"Annotations/{video}/{png.name}")
    return zip_path
