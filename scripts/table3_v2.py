"""Table 3, Table 4 and Fig. 7 on the shipped recipe: the executable form of docs/experiments/table3_v2_protocol.md.

    python scripts/table3_v2.py run    [--world data/world3] [--runs runs/table3_v2] [--jobs 2]
    python scripts/table3_v2.py report [--runs runs/table3_v2]     # collect the runs into the CSVs, then render
    python scripts/table3_v2.py report --from-csv                  # render from the committed CSVs alone

``run`` executes every task not yet finished (resumable: stop it and start it again), ``--jobs`` at a time, each a
``nice``d one-thread subprocess, in the protocol's order: the trainings of ``isvos`` and ``no_qe`` seeds 0-7, each
model's look-alike evaluation as soon as it is trained (the primary question), the probes of the ``isvos`` models on
look-alike, the other splits, the secondary arms, the remaining probes, memory size. A task that fails is retried
once (a training resumes from its last checkpoint); one that fails twice is left for the report to list as missing.

    train-<arm>-<seed>                        isvos-lite train --stage main --main-iters 960 [--init-instance ...]
    eval-<arm>-<seed>-<condition>-<split>     isvos-lite eval --no-amp (condition default or memory_<m>)
    probe-<arm>-<seed>-<condition>-<split>    this script's probe-eval: the same evaluation, injection maps altered
    stats-<arm>-<seed>                        isvos-lite qe-health --no-jf (map statistics)

``report`` writes every evaluation's per-object J and F to ``docs/experiments/table3_v2_per_video.csv`` (columns
arm, seed, condition, split, video, object, J, F; J and F as fractions, as the official CSVs) and the map statistics
to ``table3_v2_map_stats.csv``, then regenerates ``table3_v2_results.md`` and its figures from those files alone:
the primary question, the probes, the Holm-corrected exploratory questions, J&F per arm, memory size.

The earlier protocol (``scripts/table3.py``) kept no per-video numbers in the repository; its runs folder, where it
still exists, holds them as ``runs/table3/eval/<arm>-<seed>/<split>/per-sequence_results-<split>.csv``, and
``collect-v1`` turns such a folder into a CSV of this form (its arms renamed: ``full`` -> ``isvos``,
``full_no_instance_stage`` -> ``no_instance``), which ``report --from-csv --csv FILE`` then analyses the same way.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import os
import subprocess
import sys
import time
import zlib
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from isvos_lite.atomic import atomic_path, atomic_write_text  # noqa: E402

# --- the protocol (keep in step with docs/experiments/table3_v2_protocol.md) ---------------------------------------
PROTOCOL = "docs/experiments/table3_v2_protocol.md"
WORLD = "data/world3"
RUNS = "runs/table3_v2"
INSTANCE_CHECKPOINT = "checkpoints/lite_instance.safetensors"
MAIN_ITERS = 960
PRIMARY_SEEDS = tuple(range(8))
SECONDARY_SEEDS = (0, 1, 2)
SPLITS = ("lookalike", "val", "heldout", "real")
# arm -> (train options, initialised from the instance checkpoint?, seeds)
ARMS: dict[str, tuple[list[str], bool, tuple[int, ...]]] = {
    "isvos": ([], True, PRIMARY_SEEDS),
    "no_qe": (["--no-query-enhancement"], True, PRIMARY_SEEDS),
    "no_mpf": (["--no-multi-path-fusion"], True, SECONDARY_SEEDS),
    "no_qe_mpf": (["--no-query-enhancement", "--no-multi-path-fusion"], True, SECONDARY_SEEDS),
    "no_instance": ([], False, SECONDARY_SEEDS),
}
QE_ARMS = ("isvos", "no_mpf", "no_instance")
ARM_LABELS = {"isvos": "ISVOS", "no_qe": "w/o QE", "no_mpf": "w/o MPF", "no_qe_mpf": "w/o QE & MPF",
              "no_instance": "w/o instance stage"}
DEFAULT = "default"
PROBE_CONDITIONS = {"maps_flattened": "flatten", "maps_shuffled": "shuffle", "maps_other_frame": "other_frame"}
PROBE_LABELS = {"maps_flattened": "maps flattened", "maps_shuffled": "maps shuffled across queries",
                "maps_other_frame": "maps from another frame"}
PROBE_LAG = 10
PROBE_SEED = 0
# (arm, seeds, split) probed with every probe
PROBE_PLAN = (("isvos", PRIMARY_SEEDS, "lookalike"), ("isvos", SECONDARY_SEEDS, "val"),
              ("no_mpf", SECONDARY_SEEDS, "lookalike"), ("no_instance", SECONDARY_SEEDS, "lookalike"))
MEMORY_SIZES = (1, 2, 4, 8)                  # 16 is the default evaluation
MEMORY_ARM, MEMORY_SEEDS, MEMORY_SPLITS = "isvos", SECONDARY_SEEDS, ("val", "lookalike")
STATS_SPLITS = ("val", "lookalike")
# (a, b, split, question): the paired difference a - b
PRIMARY = ("isvos", "no_qe", "lookalike", "does QE help on the look-alike split?")
SECONDARY = tuple(
    [("isvos", "no_qe", s, "does QE help on the other splits?") for s in ("val", "heldout", "real")]
    + [("no_mpf", "no_qe_mpf", s, "does QE help without MPF?") for s in SPLITS]
    + [("isvos", "no_mpf", s, "does MPF help (with QE)?") for s in SPLITS]
    + [("no_qe", "no_qe_mpf", s, "does MPF help without QE?") for s in SPLITS]
    + [("isvos", "no_instance", s, "does the instance stage help (Table 4)?") for s in SPLITS])
PAPER_QE_EFFECT = 1.4            # Table 3: J&F lost without QE on DAVIS 2017 val (87.1 -> 85.7)
BOOTSTRAP_RESAMPLES = 10_000
ALPHA = 0.05
CSV_COLUMNS = ("arm", "seed", "condition", "split", "video", "object", "J", "F")
STATS_COLUMNS = ("arm", "seed", "split", "saturated", "map_correlation", "mask_agreement", "key_change")
OUT_CSV = "docs/experiments/table3_v2_per_video.csv"
OUT_STATS = "docs/experiments/table3_v2_map_stats.csv"
OUT_MD = "docs/experiments/table3_v2_results.md"
OUT_FIGURE = "docs/img/table3_v2_primary.png"
OUT_FIGURE_OVERVIEW = "docs/img/table3_v2_overview.png"


def memory_condition(size: int) -> str:
    return f"memory_{size}"


def expected_evaluations() -> list[tuple[str, int, str, str]]:
    """Every (arm, seed, condition, split) the protocol evaluates, in the protocol's order of priority."""
    primary = [(arm, s, DEFAULT, "lookalike") for s in PRIMARY_SEEDS for arm in ("isvos", "no_qe")]
    first_probes = [("isvos", s, c, "lookalike") for s in PRIMARY_SEEDS for c in PROBE_CONDITIONS]
    other_splits = [(arm, s, DEFAULT, split) for s in PRIMARY_SEEDS for arm in ("isvos", "no_qe")
                    for split in SPLITS if split != "lookalike"]
    secondary = [(arm, s, DEFAULT, split) for s in SECONDARY_SEEDS for arm in ("no_mpf", "no_qe_mpf", "no_instance")
                 for split in SPLITS]
    probes = [(arm, s, c, split) for arm, seeds, split in PROBE_PLAN for s in seeds for c in PROBE_CONDITIONS]
    memory = [(MEMORY_ARM, s, memory_condition(m), split) for s in MEMORY_SEEDS for split in MEMORY_SPLITS
              for m in MEMORY_SIZES]
    ordered: list = []
    for item in primary + first_probes + other_splits + secondary + probes + memory:
        if item not in ordered:
            ordered.append(item)
    return ordered


# --- running -----------------------------------------------------------------------------------------------------
@dataclass
class Task:
    name: str
    command: list[str]
    done_marker: Path
    needs: list[str] = field(default_factory=list)
    kind: str = "eval"


def nice(*command: str) -> list[str]:
    return ["nice", "-n", "19", *command]


def cli(*args: str) -> list[str]:
    return nice(sys.executable, "-m", "isvos_lite.cli", *args)


def train_dir(runs: Path, arm: str, seed: int) -> Path:
    return runs / f"{arm}-{seed}"


def eval_dir(runs: Path, arm: str, seed: int, condition: str, split: str) -> Path:
    return runs / "eval" / f"{arm}-{seed}" / condition / split


def train_command(world: Path, runs: Path, arm: str, seed: int, instance: Path) -> list[str]:
    options, from_instance, _ = ARMS[arm]
    command = cli("train", "--preset", "lite", "--data", str(world), "--out", str(train_dir(runs, arm, seed)),
                  "--stage", "main", "--main-iters", str(MAIN_ITERS), "--seed", str(seed), "--threads", "1",
                  "--val-every", "320", "--checkpoint-every", "80", "--quiet", *options)
    if from_instance:
        command += ["--init-instance", str(instance)]
    return command


def plan_tasks(world: Path, runs: Path, instance: Path) -> list[Task]:
    """Every task of the protocol, in the order ``run`` prefers them (the first ready task runs next)."""
    tasks: list[Task] = []
    names: set[str] = set()

    def add(task: Task) -> None:
        if task.name not in names:
            names.add(task.name)
            tasks.append(task)

    def train(arm: str, seed: int) -> str:
        name = f"train-{arm}-{seed}"
        add(Task(name, train_command(world, runs, arm, seed, instance),
                 train_dir(runs, arm, seed) / "model.safetensors", kind="train"))
        return name

    for arm, seed, condition, split in expected_evaluations():
        needs = [train(arm, seed)]
        model = train_dir(runs, arm, seed) / "model.safetensors"
        out = eval_dir(runs, arm, seed, condition, split)
        marker = out / f"per-sequence_results-{split}.csv"
        if condition in PROBE_CONDITIONS:
            command = nice(sys.executable, str(Path(__file__).resolve()), "probe-eval", "--checkpoint", str(model),
                           "--world", str(world), "--split", split, "--probe", PROBE_CONDITIONS[condition],
                           "--out", str(out))
            add(Task(f"probe-{arm}-{seed}-{condition}-{split}", command, marker, needs, kind="probe"))
            stats = runs / "qe_stats" / f"{arm}-{seed}.json"
            add(Task(f"stats-{arm}-{seed}", cli("qe-health", "--checkpoint", str(model), "--davis", str(world),
                                                 "--splits", *STATS_SPLITS, "--no-jf", "--threads", "1", "--json",
                                                 "--out", str(stats)), stats, needs, kind="stats"))
        else:
            memory = [] if condition == DEFAULT else ["--max-memory-frames", condition.split("_")[1]]
            command = cli("eval", "--checkpoint", str(model), "--davis", str(world), "--split", split, "--out",
                          str(out), "--threads", "1", "--workers", "1", "--no-amp", "--device", "cpu", *memory)
            add(Task(f"eval-{arm}-{seed}-{condition}-{split}", command, marker, needs))
    return tasks


def is_done(task: Task) -> bool:
    if not task.done_marker.exists():
        return False
    if task.kind == "train":
        meta = json.loads(task.done_marker.with_suffix(".json").read_text()).get("meta", {})
        return meta.get("stage") == "main"
    return True


def run_task(task: Task, logs: Path, attempt: int) -> tuple[str, int, float]:
    logs.mkdir(parents=True, exist_ok=True)
    command = list(task.command)
    if task.kind == "train" and (Path(command[command.index("--out") + 1]) / "checkpoints" / "latest.json").exists():
        command.append("--resume")                           # continue an interrupted training
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg", ISVOS_LITE_THREADS="1")
    start = time.time()
    with open(logs / f"{task.name}.log", "a") as log:
        log.write(f"\n# attempt {attempt}\n$ {' '.join(command)}\n")
        log.flush()
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    return task.name, code, time.time() - start


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_plan(world: Path, runs: Path, instance: Path) -> dict:
    """Check the world and the instance checkpoint; record them in runs/plan.json or refuse a changed one."""
    if not instance.exists():
        raise SystemExit(f"--instance {instance} does not exist: every arm but no_instance starts from the shipped "
                         "instance checkpoint (docs/experiments/shipping_protocol.md §1); train it first")
    missing = [s for s in SPLITS if not (world / "ImageSets" / "2017" / f"{s}.txt").exists()]
    if missing:
        raise SystemExit(f"--world {world} has no split(s) {missing}; the protocol evaluates {list(SPLITS)} of the "
                         "teaching world v3: isvos-lite toy-data --out data/world3 --seed 0")
    world_info = json.loads((world / "world.json").read_text()) if (world / "world.json").exists() else {}
    plan = {"protocol": PROTOCOL, "world": str(world), "world_version": world_info.get("version"),
            "world_seed": world_info.get("seed"), "instance_checkpoint": str(instance),
            "instance_sha256": sha256(instance)}
    path = runs / "plan.json"
    if path.exists():
        before = json.loads(path.read_text())
        changed = {k: (before.get(k), v) for k, v in plan.items() if k != "created" and before.get(k) != v}
        if changed:
            raise SystemExit(f"{path} records other inputs than these ({changed}); the runs of one protocol share one "
                             "world and one instance checkpoint: use a new --runs folder or restore the inputs")
        return before
    plan["created"] = time.strftime("%Y-%m-%d %H:%M:%S")
    atomic_write_text(path, json.dumps(plan, indent=1) + "\n")
    return plan


def run(args: argparse.Namespace) -> int:
    world, runs, instance = Path(args.world), Path(args.runs), Path(args.instance)
    all_tasks = plan_tasks(world, runs, instance)
    by_name = {t.name: t for t in all_tasks}
    finished = {t.name for t in all_tasks if is_done(t)}
    tasks = all_tasks
    if args.only:
        tasks = [t for t in all_tasks if any(t.name.startswith(p) for p in args.only)]
    print(f"{len(tasks)} tasks, {len(finished & {t.name for t in tasks})} already done", flush=True)
    if args.dry_run:
        for t in tasks:
            print(("done  " if t.name in finished else "to do ") + t.name)
        return 0
    runs.mkdir(parents=True, exist_ok=True)
    check_plan(world, runs, instance)
    failed: set[str] = set()
    attempts: dict[str, int] = {}
    running: dict = {}
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        while True:
            blocked = finished | failed | set(running)
            ready = [t for t in tasks if t.name not in blocked
                     and all(n in finished for n in t.needs) and not any(n in failed for n in t.needs)]
            while ready and len(running) < args.jobs:
                task = ready.pop(0)
                attempts[task.name] = attempts.get(task.name, 0) + 1
                print(f"[{time.strftime('%H:%M:%S')}] start {task.name}", flush=True)
                running[task.name] = pool.submit(run_task, task, runs / "logs", attempts[task.name])
            if not running:
                break
            done, _ = wait(list(running.values()), return_when=FIRST_COMPLETED)
            for future in done:
                name, code, seconds = future.result()
                del running[name]
                ok = code == 0 and is_done(by_name[name])
                if ok:
                    finished.add(name)
                elif attempts[name] >= 2:
                    failed.add(name)
                state = "done" if ok else ("FAILED" if name in failed else "failed, retrying")
                print(f"[{time.strftime('%H:%M:%S')}] {state} {name} in {seconds / 60:.1f} min "
                      f"({len(finished)}/{len(tasks)})", flush=True)
    waiting = [t.name for t in tasks if t.name not in finished | failed]
    if waiting:
        print(f"not run (they need tasks that failed or lie outside --only): {waiting}", file=sys.stderr)
    if failed:
        print(f"failed twice: {sorted(failed)}; logs in {runs / 'logs'}", file=sys.stderr)
    return 1 if failed or waiting else 0


def probe_eval(args: argparse.Namespace) -> int:
    """One evaluation with the injection maps altered by a probe (isvos_lite.eval.qe_health), fp32, one thread."""
    import torch

    from isvos_lite.checkpoint import load_checkpoint
    from isvos_lite.commands.predict import add_segmenter_arguments, segmenter_options
    from isvos_lite.eval.qe_health import evaluate_with_probe, make_probe

    torch.set_num_threads(1)
    out = Path(args.out)
    record = {"checkpoint": str(Path(args.checkpoint).resolve()), "checkpoint_sha256": sha256(Path(args.checkpoint)),
              "world": str(Path(args.world).resolve()), "split": args.split, "probe": args.probe,
              "seed": args.seed, "lag": args.lag}
    record_path = out / "probe_run.json"
    if record_path.exists() and json.loads(record_path.read_text()) != record:
        raise SystemExit(f"{out} holds a probe evaluation of other inputs ({record_path}); use another --out")
    # the segmenter options of `isvos-lite eval --no-amp --device cpu`, so the probed and the default evaluation
    # differ only by the probe
    parser = argparse.ArgumentParser()
    add_segmenter_arguments(parser)
    options = segmenter_options(parser.parse_args(["--no-amp", "--device", "cpu"]))
    atomic_write_text(record_path, json.dumps(record, indent=1) + "\n")
    model = load_checkpoint(args.checkpoint)
    result = evaluate_with_probe(model, args.world, args.split, make_probe(args.probe, args.seed, args.lag), out,
                                 **options)
    print(result.format_table())
    return 0


# --- collecting the runs into the CSVs ---------------------------------------------------------------------------
def read_per_sequence(path: Path) -> list[tuple[str, str, str, str]]:
    """(video, object, J, F) rows of an official per-sequence CSV (rows "<video>_<object id>")."""
    with open(path) as f:
        rows = list(csv.DictReader(f))
    if rows and not {"Sequence", "J-Mean", "F-Mean"} <= set(rows[0]):
        raise ValueError(f"{path} is not a per-sequence results CSV (needs Sequence, J-Mean, F-Mean columns)")
    return [(*r["Sequence"].rsplit("_", 1), r["J-Mean"], r["F-Mean"]) for r in rows]


def write_csv(path: Path, columns, rows) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def collect(runs: Path, csv_path: Path, stats_path: Path) -> int:
    """Write every finished evaluation's per-object J and F, and every map-statistics file, into the two CSVs."""
    rows = []
    for arm, seed, condition, split in expected_evaluations():
        path = eval_dir(runs, arm, seed, condition, split) / f"per-sequence_results-{split}.csv"
        if path.exists():
            rows += [(arm, seed, condition, split, *r) for r in read_per_sequence(path)]
    write_csv(csv_path, CSV_COLUMNS, rows)
    stats_rows = []
    for arm in QE_ARMS:
        for seed in ARMS[arm][2]:
            path = runs / "qe_stats" / f"{arm}-{seed}.json"
            if path.exists():
                for split, e in json.loads(path.read_text())["splits"].items():
                    stats_rows.append((arm, seed, split, e["qe_saturated"], e["qe_map_correlation"],
                                       e["qe_mask_agreement"], e["qe_key_change"]))
    write_csv(stats_path, STATS_COLUMNS, stats_rows)
    print(f"wrote {len(rows)} rows to {csv_path} and {len(stats_rows)} to {stats_path}")
    return len(rows)


V1_ARMS = {"full": "isvos", "no_qe": "no_qe", "no_mpf": "no_mpf", "no_qe_mpf": "no_qe_mpf",
           "full_no_instance_stage": "no_instance"}


def collect_v1(args: argparse.Namespace) -> int:
    """The earlier protocol's runs folder (scripts/table3.py) -> a per-video CSV of this form (condition default)."""
    runs = Path(args.runs)
    rows = []
    for folder in sorted((runs / "eval").glob("*-*")):
        arm, seed = folder.name.rsplit("-", 1)
        for split_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
            path = split_dir / f"per-sequence_results-{split_dir.name}.csv"
            if path.exists():
                rows += [(V1_ARMS.get(arm, arm), int(seed), DEFAULT, split_dir.name, *r)
                         for r in read_per_sequence(path)]
    if not rows:
        raise SystemExit(f"{runs}/eval/<arm>-<seed>/<split>/per-sequence_results-<split>.csv: none found")
    write_csv(Path(args.csv), CSV_COLUMNS, rows)
    print(f"wrote {len(rows)} rows to {args.csv}")
    return 0


# --- statistics --------------------------------------------------------------------------------------------------
def load_per_video(csv_path: Path) -> dict:
    """{(arm, seed, condition, split): {video: [(J, F) per object]}} from the per-video CSV."""
    data: dict = {}
    with open(csv_path) as f:
        reader = csv.DictReader(f)
        missing = set(CSV_COLUMNS) - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{csv_path} lacks the column(s) {sorted(missing)}; expected {list(CSV_COLUMNS)}")
        for r in reader:
            key = (r["arm"], int(r["seed"]), r["condition"], r["split"])
            data.setdefault(key, {}).setdefault(r["video"], []).append((float(r["J"]), float(r["F"])))
    return data


def video_jf(objects: list[tuple[float, float]]) -> float:
    """A video's J&F in percent: the mean over its objects of (J + F) / 2."""
    return 100.0 * float(np.mean([(j + f) / 2 for j, f in objects]))


def object_weighted_jf(videos: dict) -> float:
    """The official split J&F in percent: the mean over all objects of (J + F) / 2."""
    return 100.0 * float(np.mean([(j + f) / 2 for objects in videos.values() for j, f in objects]))


def paired_differences(data: dict, a: tuple[str, str], b: tuple[str, str], split: str,
                       seeds=None) -> tuple[np.ndarray, list[int], list[str]]:
    """d[s, v] = J&F of (arm, condition) a minus b, for the seeds both have and the videos both have in all of them.

    a, b: (arm, condition). Returns (d (S, V), seeds, videos); an empty d when no seed is shared.
    """
    have = lambda arm, cond: {s for (ar, s, c, sp) in data if ar == arm and c == cond and sp == split}  # noqa: E731
    shared = sorted(have(*a) & have(*b) & (set(seeds) if seeds is not None else have(*a)))
    if not shared:
        return np.zeros((0, 0)), [], []
    videos = sorted(set.intersection(*[set(data[(a[0], s, a[1], split)]) & set(data[(b[0], s, b[1], split)])
                                       for s in shared]))
    d = np.array([[video_jf(data[(a[0], s, a[1], split)][v]) - video_jf(data[(b[0], s, b[1], split)][v])
                   for v in videos] for s in shared])
    return d, shared, videos


def hierarchical_bootstrap(d: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Resampled means of d (seeds x videos): seeds drawn with replacement, then videos drawn with replacement.

    Seeds and videos are crossed (every seed is scored on the same videos), so one video draw per resample is shared
    by all the drawn seeds; each resample's statistic is the mean of d over drawn seeds x drawn videos
    (McCullagh 2000, https://doi.org/10.2307/3318577). Returns (resamples,).
    """
    S, V = d.shape
    seed_counts = rng.multinomial(S, np.full(S, 1.0 / S), size=resamples)           # (R, S)
    video_counts = rng.multinomial(V, np.full(V, 1.0 / V), size=resamples)          # (R, V)
    return np.einsum("rs,sv,rv->r", seed_counts, d, video_counts) / (S * V)


def video_bootstrap(per_video: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Resampled means of per-video values, videos drawn with replacement (the earlier protocol's interval)."""
    V = per_video.shape[0]
    return rng.multinomial(V, np.full(V, 1.0 / V), size=resamples) @ per_video / V


def percentile_interval(boot: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(boot, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_p(boot: np.ndarray) -> float:
    """Two-sided bootstrap p-value of 'the mean is 0': 2 min(#{T* <= 0} + 1, #{T* >= 0} + 1) / (R + 1), at most 1."""
    below, above = int((boot <= 0).sum()), int((boot >= 0).sum())
    return min(1.0, 2 * (min(below, above) + 1) / (len(boot) + 1))


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm 1979): sorted ascending, p_(i) * (m - i + 1), made monotone, <= 1."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def verdict(low: float, high: float) -> str:
    """The protocol's rule, the same for gains and costs: helps iff low > 0, hurts iff high < 0."""
    if low > 0:
        return "helps"
    if high < 0:
        return "hurts"
    return "no evidence"


def holm_verdict(estimate: float, adjusted_p: float, alpha: float = ALPHA) -> str:
    """Secondary questions: helps / hurts iff the Holm-adjusted p < alpha, by the sign of the estimate."""
    if adjusted_p < alpha and estimate > 0:
        return "helps"
    if adjusted_p < alpha and estimate < 0:
        return "hurts"
    return "no evidence"


def t_interval(values: list[float], level: float = 0.95) -> tuple[float, float] | None:
    """t interval of the mean of per-seed values (n - 1 degrees of freedom); None with fewer than two."""
    if len(values) < 2:
        return None
    from scipy import stats
    mean, se = float(np.mean(values)), float(np.std(values, ddof=1)) / math.sqrt(len(values))
    half = float(stats.t.ppf(0.5 + level / 2, len(values) - 1)) * se
    return mean - half, mean + half


def compare(data: dict, a: tuple[str, str], b: tuple[str, str], split: str, seeds=None,
            resamples: int = BOOTSTRAP_RESAMPLES) -> dict | None:
    """The paired comparison a - b on ``split``: estimate, 95 % interval, p, per-seed means, t interval, wins."""
    d, used, videos = paired_differences(data, a, b, split, seeds)
    if not used or not videos:
        return None
    # the resamples depend on the pair and split, not on their order or on what was computed before: b - a gets
    # exactly the mirrored interval of a - b, so gains and costs are treated alike
    name = "|".join(sorted((f"{a[0]}:{a[1]}", f"{b[0]}:{b[1]}"))) + f"|{split}"
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    boot = hierarchical_bootstrap(d, resamples, rng)
    low, high = percentile_interval(boot)
    per_seed = [float(x) for x in d.mean(axis=1)]
    per_video = d.mean(axis=0)
    return {"estimate": float(d.mean()), "low": low, "high": high, "p": bootstrap_p(boot), "seeds": used,
            "videos": len(videos), "per_seed": per_seed, "t_interval": t_interval(per_seed),
            "wins": int((per_video > 0).sum()), "verdict": verdict(low, high)}


# --- the report --------------------------------------------------------------------------------------------------
def _fmt(c: dict) -> str:
    return f"{c['estimate']:+.2f} [{c['low']:+.2f}, {c['high']:+.2f}]"


def _seeds(c: dict) -> str:
    return ", ".join(f"{v:+.1f}" for v in c["per_seed"])


def _t(c: dict) -> str:
    return "—" if c["t_interval"] is None else f"[{c['t_interval'][0]:+.2f}, {c['t_interval'][1]:+.2f}]"


def analyse(data: dict, resamples: int = BOOTSTRAP_RESAMPLES) -> dict:
    """Every number of the report, from the per-video data alone."""
    out: dict = {"primary": compare(data, (PRIMARY[0], DEFAULT), (PRIMARY[1], DEFAULT), PRIMARY[2], PRIMARY_SEEDS,
                                    resamples)}
    secondary = []
    for a, b, split, question in SECONDARY:
        seeds = sorted(set(ARMS[a][2]) & set(ARMS[b][2]))          # the protocol's seeds, whatever else the CSV holds
        c = compare(data, (a, DEFAULT), (b, DEFAULT), split, seeds, resamples)
        secondary.append({"a": a, "b": b, "split": split, "question": question, "result": c,
                          "p": 1.0 if c is None else c["p"]})     # a missing cell stays in the family, unclaimable
    for entry, adjusted in zip(secondary, holm([e["p"] for e in secondary])):
        entry["p_holm"] = adjusted
        entry["verdict"] = "not run" if entry["result"] is None else holm_verdict(entry["result"]["estimate"], adjusted)
    out["secondary"] = secondary
    probes = []
    for arm, seeds, split in PROBE_PLAN:
        for condition in PROBE_CONDITIONS:
            probes.append({"arm": arm, "split": split, "condition": condition,
                           "result": compare(data, (arm, condition), (arm, DEFAULT), split, seeds, resamples)})
    out["probes"] = probes
    memory = []
    for split in MEMORY_SPLITS:
        for size in MEMORY_SIZES:
            c = compare(data, (MEMORY_ARM, memory_condition(size)), (MEMORY_ARM, DEFAULT), split, MEMORY_SEEDS,
                        resamples)
            jf = [object_weighted_jf(data[(MEMORY_ARM, s, memory_condition(size), split)]) for s in MEMORY_SEEDS
                  if (MEMORY_ARM, s, memory_condition(size), split) in data]
            memory.append({"split": split, "size": size, "result": c, "jf": jf})
        jf16 = [object_weighted_jf(data[(MEMORY_ARM, s, DEFAULT, split)]) for s in MEMORY_SEEDS
                if (MEMORY_ARM, s, DEFAULT, split) in data]
        memory.append({"split": split, "size": 16, "result": None, "jf": jf16})
    out["memory"] = memory
    arms = {}
    for arm, (_, _, seeds) in ARMS.items():
        for split in SPLITS:
            arms[(arm, split)] = [(s, object_weighted_jf(data[(arm, s, DEFAULT, split)])) for s in seeds
                                  if (arm, s, DEFAULT, split) in data]
    out["arms"] = arms
    out["missing"] = [key for key in expected_evaluations() if key not in data]
    return out


def primary_lines(p: dict | None) -> list[str]:
    a, b, split, question = PRIMARY
    head = f"**{question[0].upper() + question[1:]}** ({ARM_LABELS[a]} − {ARM_LABELS[b]}, `{split}`, J&F points, video-weighted)"
    if p is None:
        return [head, "", "Not run yet: no seed has both arms evaluated on this split.", ""]
    contains = p["low"] <= PAPER_QE_EFFECT <= p["high"]
    paper = ("contains" if contains else "excludes") + f" +{PAPER_QE_EFFECT} (the paper's Table 3 QE effect on DAVIS " \
            "2017 val)" + ("" if contains else (": the effect here is smaller" if p["high"] < PAPER_QE_EFFECT
                                                 else ": the effect here is larger"))
    n = len(p["seeds"])
    lines = [head, "",
             f"**{_fmt(p)} — {p['verdict']}** (95 % two-level bootstrap interval over {n} seed"
             f"{'s' if n != 1 else ''} and {p['videos']} videos; the protocol's rule: helps iff the interval is above "
             "0, hurts iff below, no evidence otherwise).", "",
             f"- per seed ({', '.join(map(str, p['seeds']))}): {_seeds(p)}; t interval over the seeds (a check, no "
             f"verdict): {_t(p)}",
             f"- {p['wins']} of {p['videos']} videos better with QE (seed-averaged)",
             f"- the interval {paper}"]
    if n < len(PRIMARY_SEEDS):
        lines.append(f"- **provisional**: {n} of the protocol's {len(PRIMARY_SEEDS)} seeds")
    return lines + [""]


def render(analysis: dict, stats_rows: list[dict] | None, csv_name: str) -> str:
    L = ["# Table 3, Table 4 and Fig. 7 on the shipped recipe: results", "",
         f"Generated by `python scripts/table3_v2.py report` from `{csv_name}` alone (protocol: "
         "[table3_v2_protocol.md](table3_v2_protocol.md)). J&F in points (%); differences are paired by seed and "
         "video and video-weighted; intervals are 95 % two-level bootstrap intervals (seeds, then videos; "
         f"{BOOTSTRAP_RESAMPLES:,} resamples).", ""]
    if analysis["missing"]:
        L += [f"**Incomplete:** {len(analysis['missing'])} of {len(expected_evaluations())} evaluations are missing "
              "(listed at the end).", ""]
    L += ["## The primary question", ""] + primary_lines(analysis["primary"])
    L += ["## Mechanism probes (descriptive: probed − as trained, same model, same rule)", "",
          "What each would show if QE worked as §3.2 says is written in the protocol (§6) before the runs.", "",
          "| model | split | probe | Δ J&F [95 % interval] | verdict | seeds | per seed |", "|---|---|---|---|---|---|---|"]
    for e in analysis["probes"]:
        c = e["result"]
        cells = ("not run", "—", "—", "—") if c is None else (_fmt(c), c["verdict"], str(len(c["seeds"])), _seeds(c))
        L.append(f"| {ARM_LABELS[e['arm']]} | {e['split']} | {PROBE_LABELS[e['condition']]} | " + " | ".join(cells) + " |")
    L += ["", "## Secondary questions (exploratory, Holm-corrected as one family)", "",
          "| question | comparison | split | seeds | Δ J&F [95 % interval] | p | Holm p | verdict |",
          "|---|---|---|---|---|---|---|---|"]
    for e in analysis["secondary"]:
        c = e["result"]
        cells = ("—", "not run", "—") if c is None else (str(len(c["seeds"])), _fmt(c), f"{c['p']:.4f}")
        L.append(f"| {e['question']} | {ARM_LABELS[e['a']]} − {ARM_LABELS[e['b']]} | {e['split']} | "
                 + " | ".join(cells) + f" | {e['p_holm']:.4f} | {e['verdict']} (exploratory) |")
    L += ["", f"{len(analysis['secondary'])} tests in the family; a missing cell counts with p = 1. Verdict: helps / "
          "hurts iff the Holm-adjusted p < 0.05, by the sign of the estimate; the interval shown is unadjusted.", "",
          "## J&F per arm (official object-weighted split J&F, default evaluation)", "",
          "| arm | " + " | ".join(SPLITS) + " |", "|---|" + "---|" * len(SPLITS)]
    for arm in ARMS:
        cells = []
        for split in SPLITS:
            values = [v for _, v in analysis["arms"][(arm, split)]]
            if not values:
                cells.append("—")
                continue
            spread = f" ± {np.std(values, ddof=1):.1f}" if len(values) > 1 else ""
            cells.append(f"**{np.mean(values):.1f}**{spread} ({', '.join(f'{v:.1f}' for v in values)})")
        L.append(f"| {ARM_LABELS[arm]} | " + " | ".join(cells) + " |")
    L += ["", "Cells: mean over seeds ± standard deviation over seeds (each seed's value in seed order).", "",
          f"## Memory size (Fig. 7; {ARM_LABELS[MEMORY_ARM]}, seeds {', '.join(map(str, MEMORY_SEEDS))}; descriptive)",
          "", "| split | max. memory frames | J&F (object-weighted, mean over seeds) | Δ vs 16 [95 % interval] |",
          "|---|---|---|---|"]
    for e in analysis["memory"]:
        jf = f"{np.mean(e['jf']):.1f}" if e["jf"] else "—"
        delta = "(reference)" if e["size"] == 16 else ("not run" if e["result"] is None else _fmt(e["result"]))
        L.append(f"| {e['split']} | {e['size']} | {jf} | {delta} |")
    L += ["", "The teaching world's videos hold at most 6 memory frames, so sizes 8 and 16 must agree exactly; a "
          "non-zero Δ at 8 would be a fault of the memory code, not an effect.", ""]
    if stats_rows:
        L += ["## Map statistics of the QE models (`isvos-lite qe-health --no-jf`)", "",
              "| model | seed | split | saturated | map–map correlation | map–own-mask agreement | key change, maps "
              "flattened |", "|---|---|---|---|---|---|---|"]
        for r in stats_rows:
            L.append(f"| {ARM_LABELS.get(r['arm'], r['arm'])} | {r['seed']} | {r['split']} | "
                     f"{100 * float(r['saturated']):.1f} % | {float(r['map_correlation']):.3f} | "
                     f"{float(r['mask_agreement']):.3f} | {100 * float(r['key_change']):.1f} % |")
        L.append("")
    if analysis["missing"]:
        L += ["## Missing evaluations", "", ", ".join(f"{a}-{s} {c} {sp}" for a, s, c, sp in analysis["missing"]), ""]
    return "\n".join(L) + "\n"


def plot(analysis: dict, primary_path: Path, overview_path: Path) -> None:
    """Two figures: the primary question with the probes (for projection: large type, 16:9), and an overview."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colour = {"helps": "tab:green", "hurts": "tab:red", "no evidence": "tab:grey"}
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(16, 9), gridspec_kw={"width_ratios": [1.1, 1]})
    p = analysis["primary"]
    ax.axhline(0, color="black", linewidth=1.5)
    ax.axhline(PAPER_QE_EFFECT, color="tab:blue", linestyle="--", linewidth=1.5)
    ax.text(-0.55, PAPER_QE_EFFECT, f"the paper's QE effect (DAVIS 17 val): +{PAPER_QE_EFFECT}", va="bottom",
            fontsize=13, color="tab:blue")
    if p is not None:
        xs = np.linspace(-0.25, 0.25, len(p["per_seed"])) if len(p["per_seed"]) > 1 else [0.0]
        ax.scatter(xs, p["per_seed"], s=90, color="tab:grey", alpha=0.8, label="each seed")
        ax.errorbar([1], [p["estimate"]], yerr=[[p["estimate"] - p["low"]], [p["high"] - p["estimate"]]], fmt="o",
                    markersize=14, capsize=10, linewidth=3, color=colour[p["verdict"]], label="all seeds, 95 % interval")
        ax.set_title(f"Does QE help on look-alikes?\n{_fmt(p)} → {p['verdict']}", fontsize=22)
        ax.legend(fontsize=13, loc="best")
    else:
        ax.set_title("Does QE help on look-alikes?\n(not run yet)", fontsize=22)
    ax.set_xticks([0, 1], ["per seed", "estimate"], fontsize=16)
    ax.set_xlim(-0.6, 1.6)
    ax.set_ylabel("J&F(ISVOS) − J&F(w/o QE), points", fontsize=16)
    ax.tick_params(axis="y", labelsize=14)
    ax.grid(True, axis="y", alpha=0.3)
    rows = [e for e in analysis["probes"] if e["arm"] == "isvos" and e["split"] == "lookalike"]
    reach = max([1.0] + [max(abs(e["result"]["low"]), abs(e["result"]["high"])) for e in rows if e["result"]])
    bx.set_xlim(-1.25 * reach, 1.25 * reach)                       # 0 in the middle: costs left, gains right
    for y, e in enumerate(rows):
        c = e["result"]
        if c is not None:
            bx.errorbar([c["estimate"]], [y], xerr=[[c["estimate"] - c["low"]], [c["high"] - c["estimate"]]], fmt="o",
                        markersize=12, capsize=8, linewidth=3, color=colour[c["verdict"]])
    bx.axvline(0, color="black", linewidth=1.5)
    bx.set_yticks(range(len(rows)), [PROBE_LABELS[e["condition"]].replace(" across", "\nacross")
                                     .replace(" another", "\nanother") for e in rows], fontsize=16)
    bx.set_ylim(len(rows) - 0.5, -0.5)
    bx.set_xlabel("J&F probed − as trained, points", fontsize=16)
    bx.tick_params(axis="x", labelsize=14)
    bx.set_title("Probes of ISVOS on look-alikes\n(§3.2: each should cost J&F)", fontsize=20)
    bx.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    with atomic_path(primary_path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)

    fig, (cx, mx) = plt.subplots(1, 2, figsize=(16, 9), gridspec_kw={"width_ratios": [1.4, 1]})
    entries = analysis["secondary"]
    for y, e in enumerate(entries):
        c = e["result"]
        if c is not None:
            cx.errorbar([c["estimate"]], [y], xerr=[[c["estimate"] - c["low"]], [c["high"] - c["estimate"]]],
                        fmt="o", capsize=4, color=colour.get(e["verdict"], "tab:grey"))
    cx.axvline(0, color="black")
    cx.set_yticks(range(len(entries)), [f"{ARM_LABELS[e['a']]} − {ARM_LABELS[e['b']]}, {e['split']}" for e in entries],
                  fontsize=11)
    cx.set_ylim(len(entries) - 0.5, -0.5)
    cx.set_xlabel("paired Δ J&F, points (95 % interval; colour: Holm verdict)", fontsize=13)
    cx.set_title("Exploratory questions", fontsize=18)
    cx.grid(True, axis="x", alpha=0.3)
    for split, marker in zip(MEMORY_SPLITS, ("o", "s")):
        pts = [(e["size"], np.mean(e["jf"])) for e in analysis["memory"] if e["split"] == split and e["jf"]]
        if pts:
            mx.plot(*zip(*pts), marker=marker, markersize=9, linewidth=2, label=split)
    mx.set_xscale("log", base=2)
    mx.set_xticks([1, 2, 4, 8, 16], ["1", "2", "4", "8", "16"])
    mx.set_xlabel("maximum memory frames", fontsize=13)
    mx.set_ylabel("J&F (object-weighted, mean over seeds)", fontsize=13)
    mx.set_title("Memory size (Fig. 7)", fontsize=18)
    mx.grid(True, alpha=0.3)
    if mx.get_legend_handles_labels()[0]:
        mx.legend(fontsize=13)
    fig.tight_layout()
    with atomic_path(overview_path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def report(args: argparse.Namespace) -> int:
    csv_path, stats_path = Path(args.csv), Path(args.map_stats)
    if not args.from_csv:
        runs = Path(args.runs)
        if not runs.exists():
            raise SystemExit(f"--runs {runs} does not exist; `report --from-csv` renders the committed {csv_path}")
        collect(runs, csv_path, stats_path)
    if not csv_path.exists():
        raise SystemExit(f"--csv {csv_path} does not exist; run `report --runs RUNS` to collect it from the runs")
    data = load_per_video(csv_path)
    stats_rows = None
    if stats_path.exists():
        with open(stats_path) as f:
            stats_rows = list(csv.DictReader(f))
    analysis = analyse(data, args.resamples)
    text = render(analysis, stats_rows, csv_path.name)
    atomic_write_text(args.out, text)
    if args.figure:
        plot(analysis, Path(args.figure), Path(args.overview))
    print(text)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run every task of the protocol not yet finished")
    p.add_argument("--world", default=WORLD, help="the teaching world v3 (isvos-lite toy-data --out data/world3 --seed 0)")
    p.add_argument("--runs", default=RUNS, help="folder of the runs")
    p.add_argument("--instance", default=INSTANCE_CHECKPOINT, help="the instance checkpoint every arm but one starts from")
    p.add_argument("--jobs", type=int, default=2, help="tasks at a time (one thread each)")
    p.add_argument("--only", nargs="+", default=None, metavar="PREFIX", help="only tasks whose name starts so")
    p.add_argument("--dry-run", action="store_true", help="list the tasks in order, done or to do, and stop")
    p = sub.add_parser("report", help="collect the runs into the CSVs and render the results from them")
    p.add_argument("--runs", default=RUNS)
    p.add_argument("--from-csv", action="store_true", help="do not collect: render from --csv (and --map-stats)")
    p.add_argument("--csv", default=OUT_CSV)
    p.add_argument("--map-stats", default=OUT_STATS)
    p.add_argument("--out", default=OUT_MD)
    p.add_argument("--figure", default=OUT_FIGURE, help="the projectable figure (empty: none)")
    p.add_argument("--overview", default=OUT_FIGURE_OVERVIEW)
    p.add_argument("--resamples", type=int, default=BOOTSTRAP_RESAMPLES)
    p = sub.add_parser("probe-eval", help="(a task of run) one evaluation with the injection maps altered by a probe")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--world", required=True)
    p.add_argument("--split", required=True)
    p.add_argument("--probe", required=True, choices=list(PROBE_CONDITIONS.values()))
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=PROBE_SEED)
    p.add_argument("--lag", type=int, default=PROBE_LAG)
    p = sub.add_parser("collect-v1", help="the earlier protocol's runs folder -> a per-video CSV of this form")
    p.add_argument("--runs", default="runs/table3")
    p.add_argument("--csv", default="runs/table3/table3_v1_per_video.csv")
    args = parser.parse_args()
    if args.command == "report" and args.resamples < 100:
        parser.error(f"--resamples must be >= 100, got {args.resamples}")
    return {"run": run, "report": report, "probe-eval": probe_eval, "collect-v1": collect_v1}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
