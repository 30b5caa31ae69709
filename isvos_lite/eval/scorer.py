"""Score DAVIS results folders with the official DAVIS 2017 semi-supervised J&F protocol.

The paper reports J&F, J-Mean and F-Mean on DAVIS 2016 / 2017 val (§4.1, "Evaluation datasets and
metrics"; Tables 1, 2). This module reproduces the official evaluation
(davisvideochallenge/davis2017-evaluation) number for number, as written down in
``docs/DAVIS_METRIC.md`` ("spec §n" below), and is much faster:

* per-frame J and F come from :mod:`isvos_lite.eval.metrics` (equal to the official values);
* frames: the annotation PNGs of each sequence, sorted by name; the **first and the last are not
  scored** and their prediction files are never opened (spec §2);
* objects: ids 1..N with N = the largest id of the first ground-truth frame, every one of them even
  when absent from frame 0; later ids > N are ignored; ground-truth void (255) is background and
  is *not* ignored (spec §3);
* per object: Mean, Recall (fraction of frames > 0.5) and Decay (first quarter minus last
  quarter, with the official overlapping bins) of J and of F (spec §7);
* global: the plain mean over all (sequence, object) pairs; J&F-Mean = (J-Mean + F-Mean) / 2
  (spec §8);
* CSVs: ``global_results-<split>.csv`` and ``per-sequence_results-<split>.csv`` with the official
  columns and ``%.3f`` (spec §10), plus ``per-frame_results-<split>.csv`` (Sequence, Object, Frame,
  J, F at full precision) for per-frame curves. Files are written atomically, and existing ones are
  never re-read: every call scores from the PNGs.

Where the official code stops with exit code 0 or crashes (missing prediction frame, a predicted id
above N including 255, an RGB PNG, a size mismatch, fewer than 3 annotated frames), this scorer
raises ``FileNotFoundError`` / ``ValueError`` naming the sequence and file (spec §9).

Documented differences on input the official code cannot score: ImageSets blank lines are skipped;
a sequence without a ``JPEGImages`` folder is scored from its annotations alone; a frame file
``a.b.png`` is looked up as ``a.b.png`` (the official code drops inner dots); with 256 or more
evaluated frames per sequence Decay uses the true quarter bins (the official uint8 bin indices wrap:
at n = 256 its last bin is empty and Decay is NaN, beyond that the bins are garbage).

``year=2016`` scores DAVIS 2016 (``ImageSets/2016/<split>.txt``) as one object per sequence: every
non-zero pixel is foreground, in the ground truth and in the prediction alike (this covers the
DAVIS-2016 0/255 masks and DAVIS-2017 multi-object masks of the same sequences).
"""

from __future__ import annotations

import csv
import io
import multiprocessing
import os
import sys
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from isvos_lite.data.palette import read_annotation
from isvos_lite.eval.metrics import BOUND_TH, frame_scores, tolerance_radius
from isvos_lite.atomic import atomic_write_text

__all__ = [
    "GLOBAL_COLUMNS",
    "PER_SEQUENCE_COLUMNS",
    "PER_FRAME_COLUMNS",
    "ObjectRow",
    "FrameRow",
    "ScoreResult",
    "decay_bin_edges",
    "object_statistics",
    "read_annotation",
    "score_results",
    "score_sequence",
    "SequenceJob",
    "SequenceScores",
    "per_frame_scores",
    "csv_names",
]

GLOBAL_COLUMNS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
PER_SEQUENCE_COLUMNS = ("Sequence", "J-Mean", "F-Mean")
PER_FRAME_COLUMNS = ("Sequence", "Object", "Frame", "J", "F")
VOID_LABEL = 255


def csv_names(split: str) -> dict[str, str]:
    """File names of the three CSVs for a split: keys "global", "per_sequence", "per_frame"."""
    return {
        "global": f"global_results-{split}.csv",
        "per_sequence": f"per-sequence_results-{split}.csv",
        "per_frame": f"per-frame_results-{split}.csv",
    }


# --------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------

@dataclass
class ObjectRow:
    """Mean / Recall / Decay of J and F for one object of one sequence (one row of the
    per-sequence CSV, which has one row per object despite its name)."""
    sequence: str
    object_id: int
    j_mean: float
    j_recall: float
    j_decay: float
    f_mean: float
    f_recall: float
    f_decay: float

    @property
    def name(self) -> str:
        """The official row name ``<sequence>_<object id>``."""
        return f"{self.sequence}_{self.object_id}"


@dataclass
class FrameRow:
    """J and F of one object in one evaluated frame (``frame`` is the annotation file's stem)."""
    sequence: str
    object_id: int
    frame: str
    j: float
    f: float


@dataclass
class SequenceScores:
    """Per-frame scores of one sequence: the output of :func:`score_sequence`."""
    name: str
    object_ids: list[int]
    frames: list[str]          # evaluated frame ids: all annotated frames but the first and last
    j: np.ndarray              # (N, n) J per object and evaluated frame
    f: np.ndarray              # (N, n) F per object and evaluated frame


@dataclass
class ScoreResult:
    """The scores of a results folder: global metrics, one row per object, one row per object-frame."""
    split: str
    year: int
    global_metrics: dict[str, float]            # keys: GLOBAL_COLUMNS
    per_sequence: list[ObjectRow]               # ImageSets order, then object id
    per_frame: list[FrameRow] = field(repr=False)

    def curves(self, sequence: str) -> dict[int, dict[str, np.ndarray | list[str]]]:
        """Per-frame curves of one sequence: {object_id: {"frames": [...], "J": (n,), "F": (n,)}}."""
        rows = [row for row in self.per_frame if row.sequence == sequence]
        if not rows:
            known = sorted({row.sequence for row in self.per_sequence})
            raise ValueError(f"curves: no sequence {sequence!r} in these results; scored: {', '.join(known)}")
        curves: dict[int, dict] = {}
        for row in rows:
            entry = curves.setdefault(row.object_id, {"frames": [], "J": [], "F": []})
            entry["frames"].append(row.frame)
            entry["J"].append(row.j)
            entry["F"].append(row.f)
        for entry in curves.values():
            entry["J"] = np.array(entry["J"])
            entry["F"] = np.array(entry["F"])
        return curves

    def write_csvs(self, out_dir: str | os.PathLike) -> dict[str, Path]:
        """Write the three CSVs into ``out_dir`` (created if needed), each atomically.

        Returns {"global": path, "per_sequence": path, "per_frame": path}.
        """
        out_dir = Path(out_dir)
        if out_dir.exists() and not out_dir.is_dir():
            raise NotADirectoryError(f"write_csvs: {out_dir} exists and is not a folder; pass a folder for the CSVs")
        out_dir.mkdir(parents=True, exist_ok=True)
        names = csv_names(self.split)
        tables = {
            "global": [GLOBAL_COLUMNS, [_three_decimals(self.global_metrics[c]) for c in GLOBAL_COLUMNS]],
            "per_sequence": [PER_SEQUENCE_COLUMNS] + [
                [row.name, _three_decimals(row.j_mean), _three_decimals(row.f_mean)] for row in self.per_sequence],
            "per_frame": [PER_FRAME_COLUMNS] + [
                [row.sequence, row.object_id, row.frame, repr(float(row.j)), repr(float(row.f))]
                for row in self.per_frame],
        }
        paths = {}
        for key, rows in tables.items():
            paths[key] = out_dir / names[key]
            _write_csv_atomically(paths[key], rows)
        return paths

    def format_table(self, per_sequence: bool = True) -> str:
        """The global table (and the per-object J/F means) as text, like the official script prints."""
        lines = [f"{' Global results for ' + self.split + ' ':-^78}"]
        lines.append("".join(f"{c:>11}" for c in GLOBAL_COLUMNS))
        lines.append("".join(f"{self.global_metrics[c]:>11.3f}" for c in GLOBAL_COLUMNS))
        if per_sequence:
            lines.append(f"{' Per sequence results for ' + self.split + ' ':-^78}")
            width = max([len("Sequence")] + [len(row.name) for row in self.per_sequence])
            lines.append(f"{'Sequence':<{width}}  {'J-Mean':>8}  {'F-Mean':>8}")
            for row in self.per_sequence:
                lines.append(f"{row.name:<{width}}  {row.j_mean:>8.3f}  {row.f_mean:>8.3f}")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------
# per-object statistics (spec §7)
# --------------------------------------------------------------------------------------

def decay_bin_edges(n: int) -> np.ndarray:
    """Edges e_0..e_4 of the four Decay bins for n evaluated frames (spec §7).

    e_i = round_half_up(1 + i (n-1) / 4) - 1; bin i is frames e_i..e_{i+1}, both included, so
    neighbouring bins share a frame. n = 8 -> [0, 2, 4, 5, 7]: Q1 = frames 0..2, Q4 = 5..7.
    """
    if n < 1:
        raise ValueError(f"decay_bin_edges: need at least one evaluated frame, got n={n}")
    # the official expression; its `+ 1e-10` turns NumPy's round-half-to-even into half-up.
    # int64 instead of the official uint8, whose `e_4 + 1` wraps from n = 256 on (same bins for n <= 255)
    return (np.round(np.linspace(1, n, 5) + 1e-10) - 1).astype(np.int64)


def object_statistics(values: np.ndarray) -> tuple[float, float, float]:
    """(Mean, Recall, Decay) of one object's per-frame J or F values (spec §7).

    Mean = mean(v); Recall = mean(v > 0.5), strictly greater; Decay = mean(Q1) - mean(Q4), with
    the bins of :func:`decay_bin_edges`. The same NumPy reductions as the official code, so the
    results are bit-identical.
    """
    values = np.ascontiguousarray(values, dtype=np.float64)        # (n,)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"object_statistics: expected a non-empty (n,) array, got shape {values.shape}")
    mean = float(np.nanmean(values))
    recall = float(np.nanmean(values > 0.5))
    edges = decay_bin_edges(values.size)
    first_quarter = values[edges[0]:edges[1] + 1]
    last_quarter = values[edges[3]:edges[4] + 1]
    decay = float(np.nanmean(first_quarter) - np.nanmean(last_quarter))
    return mean, recall, decay


# --------------------------------------------------------------------------------------
# reading a DAVIS split
# --------------------------------------------------------------------------------------

@dataclass
class SequenceJob:
    """Everything a worker needs to score one sequence (picklable)."""
    name: str
    annotation_dir: Path
    prediction_dir: Path
    frames: list[str]          # all annotated frame ids, sorted
    year: int
    bound_th: float


def _split_sequences(davis_root: Path, split: str, year: int) -> list[str]:
    """Sequence names of ImageSets/<year>/<split>.txt, in file order, duplicates dropped (spec §1)."""
    list_file = davis_root / "ImageSets" / str(year) / f"{split}.txt"
    if not list_file.is_file():
        folder = list_file.parent
        available = sorted(p.stem for p in folder.glob("*.txt")) if folder.is_dir() else []
        hint = f"available splits for {year}: {', '.join(available)}" if available else f"{folder} has no split files"
        raise FileNotFoundError(f"split file {list_file} not found ({hint}); check --davis, --split and --year")
    names = []
    for line in list_file.read_text().splitlines():
        name = line.strip()
        if name and name not in names:
            names.append(name)
    if not names:
        raise ValueError(f"split file {list_file} lists no sequences")
    return names


def _annotated_frames(annotation_dir: Path) -> list[str]:
    """Frame ids of a sequence: the annotation PNG names without '.png', sorted (spec §1)."""
    names = sorted(p for p in os.listdir(annotation_dir) if p.endswith(".png") and not p.startswith("."))
    return [name[: -len(".png")] for name in names]


def _plan_jobs(davis_root: Path, results_dir: Path, split: str, year: int, resolution: str,
               sequences: list[str] | None, bound_th: float) -> list[SequenceJob]:
    """Check the whole layout before any scoring, so bad input fails in seconds, not minutes."""
    if not davis_root.is_dir():
        raise FileNotFoundError(f"DAVIS root {davis_root} is not a folder; pass the folder that holds Annotations/ and ImageSets/")
    if not results_dir.is_dir():
        raise FileNotFoundError(f"results folder {results_dir} does not exist; expected <results>/<sequence>/<frame>.png")
    names = _split_sequences(davis_root, split, year) if sequences is None else list(dict.fromkeys(sequences))
    if not names:
        raise ValueError("score_results: the list of sequences is empty")
    annotations = davis_root / "Annotations" / resolution
    if not annotations.is_dir():
        raise FileNotFoundError(f"annotation folder {annotations} not found; check --davis and --resolution")

    jobs = []
    for name in names:
        annotation_dir = annotations / name
        if not annotation_dir.is_dir():
            raise FileNotFoundError(f"sequence {name}: annotation folder {annotation_dir} not found")
        frames = _annotated_frames(annotation_dir)
        if len(frames) < 3:
            raise ValueError(
                f"sequence {name}: {annotation_dir} has {len(frames)} annotated frame(s); the semi-supervised "
                "protocol skips the first and last frame, so at least 3 are needed (the official code crashes here)")
        image_dir = davis_root / "JPEGImages" / resolution / name
        if image_dir.is_dir():
            n_images = sum(1 for p in os.listdir(image_dir) if p.endswith(".jpg"))
            if n_images > len(frames):
                raise ValueError(
                    f"sequence {name}: {n_images} JPEG frames but only {len(frames)} annotations in {annotation_dir}; "
                    "every frame must be annotated (train/val are)")
        prediction_dir = results_dir / name
        if not prediction_dir.is_dir():
            raise FileNotFoundError(
                f"sequence {name}: results folder {prediction_dir} not found; expected one PNG per annotated "
                f"frame (first and last optional) in {results_dir}/<sequence>/<frame>.png")
        missing = [f for f in frames[1:-1] if not (prediction_dir / f"{f}.png").is_file()]
        if missing:
            shown = ", ".join(f"{f}.png" for f in missing[:5]) + (", ..." if len(missing) > 5 else "")
            raise FileNotFoundError(
                f"sequence {name}: {len(missing)} prediction frame(s) missing in {prediction_dir} ({shown}); "
                "every annotated frame except the first and the last must have a prediction PNG")
        jobs.append(SequenceJob(name, annotation_dir, prediction_dir, frames, year, bound_th))
    return jobs


# --------------------------------------------------------------------------------------
# scoring
# --------------------------------------------------------------------------------------

def score_sequence(job: SequenceJob) -> SequenceScores:
    """Per-frame J and F of every object of one sequence (spec §2, §3)."""
    first = _ground_truth(job, job.frames[0])                          # (H, W)
    height, width = first.shape
    object_ids = [1] if job.year == 2016 else list(range(1, int(first.max()) + 1))
    radius = tolerance_radius(height, width, job.bound_th)
    evaluated = job.frames[1:-1]
    j_scores = np.zeros((len(object_ids), len(evaluated)))             # (N, n)
    f_scores = np.zeros((len(object_ids), len(evaluated)))             # (N, n)

    for t, frame in enumerate(evaluated):
        gt = _ground_truth(job, frame)
        if gt.shape != (height, width):
            raise ValueError(
                f"sequence {job.name}: annotation {job.annotation_dir / (frame + '.png')} is {gt.shape[1]}x{gt.shape[0]} "
                f"but the first frame is {width}x{height}; all frames of a sequence must have one size")
        pred = _prediction(job, frame, len(object_ids))
        if pred.shape != gt.shape:
            raise ValueError(
                f"sequence {job.name}: prediction {job.prediction_dir / (frame + '.png')} is {pred.shape[1]}x{pred.shape[0]} "
                f"(WxH) but the annotation is {gt.shape[1]}x{gt.shape[0]}; predictions must have the annotation's size "
                "(resize with nearest-neighbour interpolation)")
        j_scores[:, t], f_scores[:, t] = frame_scores(gt, pred, object_ids, radius)
    return SequenceScores(job.name, object_ids, evaluated, j_scores, f_scores)


def _ground_truth(job: SequenceJob, frame: str) -> np.ndarray:
    labels = read_annotation(job.annotation_dir / f"{frame}.png")
    if job.year == 2016:
        return (labels != 0).astype(np.uint8)      # one object: every non-zero pixel (0/255 masks included)
    labels[labels == VOID_LABEL] = 0               # void is background and is scored (spec §3)
    return labels


def _prediction(job: SequenceJob, frame: str, num_objects: int) -> np.ndarray:
    path = job.prediction_dir / f"{frame}.png"
    try:
        # decoded like the official code; read_mask's unique-id scan would cost ~1.8 ms per frame
        labels = read_annotation(path, "prediction")
    except ValueError:
        # imported here: isvos_lite.data pulls in torch, which the scoring workers do not need
        from isvos_lite.data.palette import read_mask
        read_mask(path, allow_many_ids=True)  # raises its how-to-fix message for RGB / alpha / corrupt files
        raise
    if job.year == 2016:
        return (labels != 0).astype(np.uint8)   # one object: every non-zero pixel
    highest = int(labels.max())
    if highest > num_objects:
        note = " (255 is the void label of annotations, never a predicted object id)" if highest == VOID_LABEL else ""
        raise ValueError(
            f"sequence {job.name}: prediction {path} contains object id {highest}{note}, but the first annotated "
            f"frame ({job.frames[0]}.png) has {num_objects} object(s) (ids 1..{num_objects}); the DAVIS protocol "
            "scores only those ids - remove the others or check the id mapping")
    return labels


def score_results(davis_root: str | os.PathLike, results_dir: str | os.PathLike, split: str = "val",
                  year: int = 2017, out_dir: str | os.PathLike | None = None, workers: int | None = None,
                  sequences: list[str] | None = None, *, resolution: str = "480p", bound_th: float = BOUND_TH,
                  progress: bool = True) -> ScoreResult:
    """Score a DAVIS results folder (``<results>/<sequence>/<frame>.png`` palette PNGs).

    Args:
        davis_root: the DAVIS folder with ``Annotations/<resolution>/`` and ``ImageSets/<year>/``.
        results_dir: predictions, one folder per sequence.
        split: a split file of ``ImageSets/<year>/`` (train, val, ...).
        year: 2017 (multi-object) or 2016 (one object per sequence).
        out_dir: when given, the three CSVs are written there. This split's CSVs from an earlier
            run are deleted first, so a run that fails leaves no stale numbers behind.
        workers: processes scoring sequences in parallel; default min(4, CPU count).
        sequences: score only these sequences (in this order) instead of the split's list.
        resolution: ``480p`` or ``Full-Resolution``.
        bound_th: boundary tolerance (the official 0.008 of the diagonal).
        progress: show a tqdm bar over sequences.
    """
    if year not in (2016, 2017):
        raise ValueError(f"score_results: year must be 2016 or 2017, got {year!r}")
    workers = min(4, os.cpu_count() or 1) if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"score_results: workers must be >= 1, got {workers}")
    if out_dir is not None:
        _remove_stale_csvs(Path(out_dir), split)   # first, so that a run that fails leaves no old numbers
    jobs = _plan_jobs(Path(davis_root), Path(results_dir), split, year, resolution, sequences, bound_th)

    scored = _run_jobs(jobs, workers, progress)
    result = _aggregate(scored, split, year)
    if out_dir is not None:
        result.write_csvs(out_dir)
    return result


def _run_jobs(jobs: list[SequenceJob], workers: int, progress: bool) -> list[SequenceScores]:
    """Score sequences, in parallel over a process pool when it helps; results keep the job order."""
    bar = tqdm(total=len(jobs), desc="scoring", unit="seq", disable=not progress)
    try:
        if workers == 1 or len(jobs) == 1:
            scored = []
            for job in jobs:
                scored.append(score_sequence(job))
                bar.update(1)
            return scored
        context = multiprocessing.get_context(_start_method())
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context) as pool:
            futures = [pool.submit(score_sequence, job) for job in jobs]
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for future in done:
                    if future.exception() is not None:
                        for other in pending:
                            other.cancel()
                        raise future.exception()
                    bar.update(1)
            return [future.result() for future in futures]
    finally:
        bar.close()


def _start_method() -> str:
    """How scoring workers start.

    'fork' on Linux when torch is not loaded in this process (``isvos-lite score``): workers start in milliseconds and
    scripts need no ``__main__`` guard. Once torch (or a Jupyter kernel's threads) live in the process, forking can
    copy a held lock into the child and hang it, so then 'forkserver' (children forked from a fresh, thread-free
    server). Elsewhere the platform default ('spawn' on macOS and Windows).
    """
    methods = multiprocessing.get_all_start_methods()
    if sys.platform.startswith("linux"):
        if "torch" not in sys.modules and "ipykernel" not in sys.modules and "fork" in methods:
            return "fork"
        if "forkserver" in methods:
            return "forkserver"
    return multiprocessing.get_start_method(allow_none=False)


def _aggregate(scored: list[SequenceScores], split: str, year: int) -> ScoreResult:
    """Per-object statistics, then plain means over all objects (spec §7, §8)."""
    per_sequence: list[ObjectRow] = []
    per_frame: list[FrameRow] = []
    for seq in scored:
        for index, object_id in enumerate(seq.object_ids):
            j_stats = object_statistics(seq.j[index])
            f_stats = object_statistics(seq.f[index])
            per_sequence.append(ObjectRow(seq.name, object_id, *j_stats, *f_stats))
            per_frame.extend(FrameRow(seq.name, object_id, frame, float(j), float(f))
                             for frame, j, f in zip(seq.frames, seq.j[index], seq.f[index]))
    if not per_sequence:
        raise ValueError("no objects to score: the first annotated frame of every sequence is empty")

    def mean_of(attribute: str) -> float:
        return float(np.mean([getattr(row, attribute) for row in per_sequence]))

    j_mean, f_mean = mean_of("j_mean"), mean_of("f_mean")
    global_metrics = {
        "J&F-Mean": (j_mean + f_mean) / 2.0,
        "J-Mean": j_mean, "J-Recall": mean_of("j_recall"), "J-Decay": mean_of("j_decay"),
        "F-Mean": f_mean, "F-Recall": mean_of("f_recall"), "F-Decay": mean_of("f_decay"),
    }
    return ScoreResult(split, year, global_metrics, per_sequence, per_frame)


# --------------------------------------------------------------------------------------
# in-memory scoring for notebooks
# --------------------------------------------------------------------------------------

def per_frame_scores(gt_masks: np.ndarray, pred_masks: np.ndarray, object_ids=None,
                     bound_th: float = BOUND_TH) -> dict[int, dict[str, np.ndarray]]:
    """Per-frame J and F curves of in-memory label maps, for notebooks and figures.

    Args:
        gt_masks: (T, H, W) integer ground-truth ids (255 = void, counted as background).
        pred_masks: (T, H, W) integer predicted ids.
        object_ids: ids to score; default 1..max(gt_masks[0]) as in the DAVIS protocol.
        bound_th: boundary tolerance (the official 0.008 of the diagonal).

    Returns:
        {object_id: {"J": (T,) float64, "F": (T,) float64}}. Every given frame is scored; slice
        ``[1:-1]`` to follow the benchmark protocol, which skips the first and last frame.
    """
    gt_masks = np.asarray(gt_masks)
    pred_masks = np.asarray(pred_masks)
    if gt_masks.ndim != 3 or gt_masks.shape != pred_masks.shape:
        raise ValueError(
            f"per_frame_scores: expected gt and pred of the same (T, H, W) shape, got {gt_masks.shape} and {pred_masks.shape}")
    for name, masks in (("gt_masks", gt_masks), ("pred_masks", pred_masks)):
        if masks.dtype == np.bool_ or not np.issubdtype(masks.dtype, np.integer):
            raise ValueError(f"per_frame_scores: {name} must hold integer object ids, got dtype {masks.dtype}")
    gt_masks = np.where(gt_masks == VOID_LABEL, 0, gt_masks)
    if object_ids is None:
        object_ids = list(range(1, int(gt_masks[0].max()) + 1))
    object_ids = [int(k) for k in object_ids]
    radius = tolerance_radius(*gt_masks.shape[1:], bound_th=bound_th)
    j_scores = np.zeros((len(object_ids), len(gt_masks)))             # (N, T)
    f_scores = np.zeros((len(object_ids), len(gt_masks)))             # (N, T)
    for t in range(len(gt_masks)):
        j_scores[:, t], f_scores[:, t] = frame_scores(gt_masks[t], pred_masks[t], object_ids, radius)
    return {k: {"J": j_scores[i], "F": f_scores[i]} for i, k in enumerate(object_ids)}


# --------------------------------------------------------------------------------------
# CSV helpers
# --------------------------------------------------------------------------------------

def _three_decimals(value: float) -> str:
    """printf ``%.3f`` of the double, as pandas' float_format does (a tiny negative gives -0.000)."""
    return "%.3f" % value


def _write_csv_atomically(path: Path, rows: list) -> None:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def _remove_stale_csvs(out_dir: Path, split: str) -> None:
    """Delete this split's CSVs from an earlier run: results are always scored afresh."""
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"CSV output {out_dir} exists and is not a folder")
    for name in csv_names(split).values():
        (out_dir / name).unlink(missing_ok=True)
