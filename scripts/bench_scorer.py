"""Time the DAVIS scorer against a straightforward per-frame implementation of the metric.

Generates a job the size of DAVIS-2017 val (30 sequences with val's frame and object counts:
1,999 frames, 61 objects, 3,862 scored object-frames; 480x854 frames, one sequence 480x910 and
one 480x1152 like bike-packing and shooting), with smooth moving blob objects and noisy predictions
(jittered outlines, small shifts, dropped objects, false-positive blobs). Then it scores the same
folder twice, end to end from the PNGs:

* ``isvos_lite.eval.scorer.score_results`` with 1 worker and with ``--workers``;
* a plain reference written here from the metric definition (spec §5-§8), per frame and per
  object, the way the official code does it: full-frame boundary maps and ``cv2.dilate`` with a
  disk for F.

It prints the seconds of each, the ratios, and checks that both give the same per-frame numbers.

    .venv/bin/python scripts/bench_scorer.py                 # full DAVIS-17-val-sized job
    .venv/bin/python scripts/bench_scorer.py --fraction 0.1  # quick run on 10% of the frames
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from isvos_lite.eval.scorer import score_results

# (frames, objects) per sequence, the DAVIS-2017 val profile; two sequences are wider than 854 px
VAL_PROFILE = [69, 50, 80, 84, 90, 75, 40, 104, 90, 60, 66, 52, 50, 90, 78,
               50, 81, 34, 50, 47, 49, 50, 79, 40, 80, 100, 79, 43, 40, 99]
VAL_OBJECTS = [2, 1, 2, 1, 1, 1, 1, 1, 1, 1, 3, 1, 1, 1, 5, 2, 3, 2, 3, 5, 1, 3, 2, 2, 3, 1, 3, 2, 3, 3]
WIDTHS = {0: 910, 28: 1152}   # sequence index -> width (others 854)
HEIGHT = 480


# --------------------------------------------------------------------------------------
# synthetic DAVIS-sized job
# --------------------------------------------------------------------------------------

class BlobTrack:
    """One object: a smooth star-shaped blob whose outline wobbles while it drifts and scales."""

    def __init__(self, rng: np.random.Generator, height: int, width: int):
        self.height, self.width = height, width
        self.radius = rng.uniform(0.06, 0.28) * height
        self.start = np.array([rng.uniform(0.2, 0.8) * height, rng.uniform(0.15, 0.85) * width])
        self.velocity = rng.normal(0, 2.5, size=2)
        self.amplitudes = rng.uniform(0.0, 0.18, size=5) / np.arange(1, 6)
        self.phases = rng.uniform(0, 2 * np.pi, size=5)
        self.phase_speed = rng.normal(0, 0.05, size=5)

    def polygon(self, t: int, jitter: float = 0.0, shift=(0.0, 0.0), rng=None) -> np.ndarray:
        """(64, 2) int32 x, y vertices of the outline at frame t."""
        angles = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        harmonics = np.arange(1, 6)[:, None]
        wobble = (self.amplitudes[:, None] * np.cos(harmonics * angles + (self.phases + t * self.phase_speed)[:, None])).sum(0)
        radii = self.radius * (1 + 0.15 * np.sin(t / 17.0)) * (1 + wobble)
        if jitter:
            radii = radii * (1 + rng.normal(0, jitter, size=radii.shape))
        centre = self.start + t * self.velocity + np.asarray(shift)
        # bounce off the frame edges so objects stay (mostly) in view
        centre = np.abs((centre + [self.height, self.width]) % (2 * np.array([self.height, self.width]))
                        - [self.height, self.width])
        xs = centre[1] + radii * np.cos(angles)
        ys = centre[0] + radii * np.sin(angles)
        return np.round(np.stack([xs, ys], axis=1)).astype(np.int32)


def generate_job(root: Path, fraction: float, seed: int) -> int:
    """Write Annotations/480p, ImageSets/2017/val.txt and results/ under root; returns object-frames."""
    # imported here: isvos_lite.data pulls in torch, and the scorer's worker processes re-import
    # this script as their __main__ module
    from isvos_lite.data.palette import write_mask

    rng = np.random.default_rng(seed)
    names = []
    object_frames = 0
    total_frames = sum(max(3, int(round(t * fraction))) for t in VAL_PROFILE)
    bar = tqdm(total=total_frames, desc="generating", unit="frame")
    for index, (n_frames, n_objects) in enumerate(zip(VAL_PROFILE, VAL_OBJECTS)):
        n_frames = max(3, int(round(n_frames * fraction)))
        name = f"seq{index:02d}"
        names.append(name)
        width = WIDTHS.get(index, 854)
        tracks = [BlobTrack(rng, HEIGHT, width) for _ in range(n_objects)]
        object_frames += n_objects * (n_frames - 2)
        for t in range(n_frames):
            gt = np.zeros((HEIGHT, width), np.uint8)
            pred = np.zeros((HEIGHT, width), np.uint8)
            for object_id, track in enumerate(tracks, start=1):
                cv2.fillPoly(gt, [track.polygon(t)], object_id)
                if rng.random() < 0.03:
                    continue                                  # the prediction loses the object
                shift = rng.normal(0, 2.0, size=2)
                cv2.fillPoly(pred, [track.polygon(t, jitter=0.03, shift=shift, rng=rng)], object_id)
                if rng.random() < 0.05:                       # a false-positive blob of this id
                    centre = (int(rng.uniform(0, width)), int(rng.uniform(0, HEIGHT)))
                    cv2.circle(pred, centre, int(rng.uniform(5, 30)), object_id, -1)
            write_mask(root / "Annotations" / "480p" / name / f"{t:05d}.png", gt)
            write_mask(root / "results" / name / f"{t:05d}.png", pred)
            bar.update(1)
    bar.close()
    (root / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n".join(names) + "\n")
    return object_frames


# --------------------------------------------------------------------------------------
# the straightforward reference: per frame, per object, full-frame images
# --------------------------------------------------------------------------------------

def reference_boundary_map(mask: np.ndarray) -> np.ndarray:
    """b(M) with the right / below / below-right neighbours, border rules of spec §6.1."""
    east = np.zeros_like(mask)
    south = np.zeros_like(mask)
    south_east = np.zeros_like(mask)
    east[:, :-1] = mask[:, 1:]
    south[:-1, :] = mask[1:, :]
    south_east[:-1, :-1] = mask[1:, 1:]
    b = (mask ^ east) | (mask ^ south) | (mask ^ south_east)
    b[-1, :] = mask[-1, :] ^ east[-1, :]
    b[:, -1] = mask[:, -1] ^ south[:, -1]
    b[-1, -1] = False
    return b


def reference_f(pred: np.ndarray, gt: np.ndarray) -> float:
    radius = int(np.ceil(0.008 * np.linalg.norm(pred.shape)))
    offsets = np.arange(-radius, radius + 1)
    disk = ((offsets[:, None] ** 2 + offsets[None, :] ** 2) <= radius ** 2).astype(np.uint8)
    pred_boundary = reference_boundary_map(pred)
    gt_boundary = reference_boundary_map(gt)
    pred_dilated = cv2.dilate(pred_boundary.astype(np.uint8), disk)
    gt_dilated = cv2.dilate(gt_boundary.astype(np.uint8), disk)
    n_pred, n_gt = int(pred_boundary.sum()), int(gt_boundary.sum())
    if n_pred == 0 and n_gt > 0:
        precision, recall = 1, 0
    elif n_pred > 0 and n_gt == 0:
        precision, recall = 0, 1
    elif n_pred == 0 and n_gt == 0:
        precision, recall = 1, 1
    else:
        precision = int((pred_boundary & (gt_dilated > 0)).sum()) / n_pred
        recall = int((gt_boundary & (pred_dilated > 0)).sum()) / n_gt
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def reference_j(pred: np.ndarray, gt: np.ndarray) -> float:
    union = int((pred | gt).sum())
    return 1.0 if union == 0 else int((pred & gt).sum()) / union


def reference_statistics(values: np.ndarray) -> tuple[float, float, float]:
    edges = (np.round(np.linspace(1, len(values), 5) + 1e-10) - 1).astype(int)
    decay = np.nanmean(values[edges[0]:edges[1] + 1]) - np.nanmean(values[edges[3]:edges[4] + 1])
    return np.nanmean(values), np.nanmean(values > 0.5), decay


def decode_only(davis_root: Path, results_dir: Path, split: str) -> int:
    """Just decode every PNG both scorers read: the floor under any implementation."""
    decoded = 0
    for name in (davis_root / "ImageSets" / "2017" / f"{split}.txt").read_text().split():
        annotation_dir = davis_root / "Annotations" / "480p" / name
        frames = sorted(p.stem for p in annotation_dir.glob("*.png"))
        np.array(Image.open(annotation_dir / f"{frames[0]}.png"))
        for frame in frames[1:-1]:
            np.array(Image.open(annotation_dir / f"{frame}.png"))
            np.array(Image.open(results_dir / name / f"{frame}.png"))
            decoded += 2
    return decoded


def reference_score(davis_root: Path, results_dir: Path, split: str) -> tuple[dict, dict]:
    """Global metrics and {(sequence, object, frame): (J, F)} the plain way."""
    names = (davis_root / "ImageSets" / "2017" / f"{split}.txt").read_text().split()
    per_frame = {}
    stats = {key: [] for key in ("JM", "JR", "JD", "FM", "FR", "FD")}
    for name in names:
        annotation_dir = davis_root / "Annotations" / "480p" / name
        frames = sorted(p.stem for p in annotation_dir.glob("*.png"))
        first = np.array(Image.open(annotation_dir / f"{frames[0]}.png"))
        first[first == 255] = 0
        n_objects = int(first.max())
        j_values = np.zeros((n_objects, len(frames) - 2))
        f_values = np.zeros((n_objects, len(frames) - 2))
        for t, frame in enumerate(frames[1:-1]):
            gt = np.array(Image.open(annotation_dir / f"{frame}.png"))
            gt[gt == 255] = 0
            pred = np.array(Image.open(results_dir / name / f"{frame}.png"))
            for k in range(1, n_objects + 1):
                j_values[k - 1, t] = reference_j(pred == k, gt == k)
                f_values[k - 1, t] = reference_f(pred == k, gt == k)
                per_frame[(name, k, frame)] = (j_values[k - 1, t], f_values[k - 1, t])
        for k in range(n_objects):
            for prefix, values in (("J", j_values[k]), ("F", f_values[k])):
                mean, recall, decay = reference_statistics(values)
                stats[prefix + "M"].append(mean)
                stats[prefix + "R"].append(recall)
                stats[prefix + "D"].append(decay)
    j_mean, f_mean = np.mean(stats["JM"]), np.mean(stats["FM"])
    global_metrics = {"J&F-Mean": (j_mean + f_mean) / 2, "J-Mean": j_mean, "J-Recall": np.mean(stats["JR"]),
                      "J-Decay": np.mean(stats["JD"]), "F-Mean": f_mean, "F-Recall": np.mean(stats["FR"]),
                      "F-Decay": np.mean(stats["FD"])}
    return global_metrics, per_frame


# --------------------------------------------------------------------------------------

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=None, help="folder for the generated job (default: a temp folder, deleted)")
    parser.add_argument("--fraction", type=float, default=1.0, help="fraction of each sequence's frames (default 1.0)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                        help="workers for the parallel run (default: min(4, CPU count))")
    parser.add_argument("--skip-reference", action="store_true", help="time only the scorer")
    parser.add_argument("--repeat", type=int, default=1, help="alternate the runs this many times, report the best")
    args = parser.parse_args(argv)
    if not 0 < args.fraction <= 1:
        parser.error("--fraction must be in (0, 1]")
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")

    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench_scorer_"))
    try:
        if (root / "ImageSets" / "2017" / "val.txt").is_file():
            print(f"re-using the job in {root}")
        else:
            generate_job(root, args.fraction, args.seed)
        results = root / "results"

        # runs alternate, and each time reported is the best of --repeat, so that other load on a
        # shared machine penalises both sides alike
        runs = {"scorer, 1 worker": lambda: score_results(root, results, "val", workers=1, progress=False)}
        if args.workers > 1:
            runs[f"scorer, {args.workers} workers"] = (
                lambda: score_results(root, results, "val", workers=args.workers, progress=False))
        if not args.skip_reference:
            runs["straightforward reference"] = lambda: reference_score(root, results, "val")
        runs["PNG decoding alone"] = lambda: decode_only(root, results, "val")
        # wall-clock seconds, and CPU seconds of this process (less sensitive to other load; not
        # meaningful for the multi-worker run, whose work happens in child processes)
        timings = {label: [] for label in runs}
        cpu_timings = {label: [] for label in runs}
        outputs = {}
        for repeat in range(args.repeat):
            for label, run in runs.items():
                start, cpu_start = time.perf_counter(), time.process_time()
                outputs[label] = run()
                timings[label].append(time.perf_counter() - start)
                cpu_timings[label].append(time.process_time() - cpu_start)
                print(f"  run {repeat + 1}/{args.repeat}: {label:<28} {timings[label][-1]:7.2f} s "
                      f"(CPU {cpu_timings[label][-1]:.2f} s)")

        ours = outputs["scorer, 1 worker"]
        object_frames = len(ours.per_frame)
        if args.workers > 1:
            parallel = outputs[f"scorer, {args.workers} workers"]
            assert parallel.global_metrics == ours.global_metrics, "parallel and serial scores differ"
        if not args.skip_reference:
            reference_global, reference_frames = outputs["straightforward reference"]
            worst = max(max(abs(row.j - reference_frames[(row.sequence, row.object_id, row.frame)][0]),
                            abs(row.f - reference_frames[(row.sequence, row.object_id, row.frame)][1]))
                        for row in ours.per_frame)
            worst_global = max(abs(ours.global_metrics[k] - reference_global[k]) for k in reference_global)
            print(f"largest per-frame |difference| vs the reference: {worst:.3g}; global: {worst_global:.3g}")
            if worst > 1e-9 or worst_global > 1e-9:
                print("MISMATCH between the scorer and the reference", file=sys.stderr)
                return 1
        timings = {label: min(values) for label, values in timings.items()}
        cpu_timings = {label: min(values) for label, values in cpu_timings.items()}

        print(f"\njob: {len(ours.per_sequence)} objects, {object_frames} object-frames "
              f"({len(VAL_PROFILE)} sequences, 480x854 / 480x910 / 480x1152), CPU count {os.cpu_count()}, "
              f"best of {args.repeat}")
        print(f"  {'':<28} {'wall':>9} {'per object-frame':>18} {'CPU (this process)':>20}")
        for label, seconds in timings.items():
            cpu = f"{cpu_timings[label]:7.2f} s" if "workers" not in label else "-"
            print(f"  {label:<28} {seconds:7.2f} s {1000 * seconds / object_frames:14.2f} ms {cpu:>20}")
        if "straightforward reference" in timings:
            reference = "straightforward reference"
            for label, seconds in timings.items():
                if label.startswith("scorer"):
                    cpu_ratio = (f", CPU {cpu_timings[reference] / cpu_timings[label]:.1f}x"
                                 if "workers" not in label else "")
                    print(f"  speed-up of {label:<20} wall {timings[reference] / seconds:5.1f}x{cpu_ratio}")
            # both read the same PNGs; what is left is the metric itself
            decode_cpu = cpu_timings["PNG decoding alone"]
            ours_metric = cpu_timings["scorer, 1 worker"] - decode_cpu
            reference_metric = cpu_timings[reference] - decode_cpu
            print(f"  CPU beyond PNG decoding: scorer {ours_metric:.2f} s, reference {reference_metric:.2f} s "
                  f"-> {reference_metric / max(ours_metric, 1e-9):.1f}x")
        print(f"  J&F-Mean {ours.global_metrics['J&F-Mean']:.3f}  J-Mean {ours.global_metrics['J-Mean']:.3f}  "
              f"F-Mean {ours.global_metrics['F-Mean']:.3f}")
    finally:
        if not args.out:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
