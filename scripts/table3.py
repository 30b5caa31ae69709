"""Teaching-scale Table 3 / Table 4: run the pre-registered protocol and regenerate its results table.

The protocol (arms, seeds, recipe, splits, metric, analysis) is ``docs/experiments/table3_protocol.md``; this
script is its executable form. Two subcommands:

    python scripts/table3.py run    --world data/world --runs runs/table3 --jobs 2
    python scripts/table3.py report --world data/world --runs runs/table3 \\
        --out docs/experiments/table3_results.md --figure docs/img/table3_differences.png

``run`` executes every task not yet finished (resumable: kill it and start it again), ``--jobs`` at a time, each
a ``nice``d subprocess at one thread, in an order that completes whole seeds first, so a partial run still has
every arm of the seeds it reached. Tasks per seed s:

    instance              isvos-lite train --stage instance (once; shared by every arm and seed that uses it)
    instance_long         the same stage continued for 6,000 iterations (amendment 6; once, shared)
    instance_xl, _xxl     continued for 6,000 and 2,500 more (amendment 7; 17,000 in all; once, shared)
    train-<arm>-s         isvos-lite train --stage main [--init-instance instance | instance_long]
    eval-<arm>-s-<split>  isvos-lite eval (official-equivalent J&F, per-sequence CSV)
    qe-health-<arm>-s     isvos-lite qe-health on each model with QE (flattened-map J&F on val and lookalike)
    qe-stats-<arm>-s      the same, map statistics only (qe_key_change for older QE-health files)

``report`` reads the per-sequence CSVs and writes the table in the protocol's form: per arm and split the mean
J&F over seeds (and each seed's value), and for each pre-registered comparison the per-video paired difference
pooled over seeds with a 95 % bootstrap confidence interval (videos resampled, 10,000 resamples).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# --- the protocol (keep in step with docs/experiments/table3_protocol.md) ------------------------------------------
SEEDS = (0, 1, 2)
INSTANCE_ITERS = 2500          # one instance stage, seed 0, shared by every seed (amendment 1)
INSTANCE_SEED = 0
INSTANCE_LONG_ITERS = 6000     # amendment 6: the instance stage continued for 6,000 more iterations (8,500 in all)
MAIN_ITERS = 320
# amendment 7: instance_long continued for 6,000 (instance_xl) and 2,500 (instance_xxl) more iterations
INSTANCE_XL_ITERS = 6000
INSTANCE_XXL_ITERS = 2500
# amendment 7: arms with a main stage 3x as long (the schedule stretched: decay at the same fraction)
LONG_MAIN_ITERS = 960
ARM_MAIN_ITERS = {"full_balanced_xl": LONG_MAIN_ITERS, "no_qe_xl": LONG_MAIN_ITERS}
SPLITS = ("val", "lookalike", "heldout")
# arm -> (extra train options, the instance stage it starts from: "instance", "instance_long" or None)
ARMS: dict[str, tuple[list[str], str | None]] = {
    "full": ([], "instance"),
    "no_qe": (["--no-query-enhancement"], "instance"),
    "no_mpf": (["--no-multi-path-fusion"], "instance"),
    "no_qe_mpf": (["--no-query-enhancement", "--no-multi-path-fusion"], "instance"),
    "full_no_instance_stage": ([], None),
    "full_identity": (["--qe-injection", "identity"], "instance"),      # amendment 3
    "full_identity_sharp": (["--qe-injection", "identity", "--qe-tau-max", "12", "--qe-tau-init", "10"],
                            "instance"),                                                          # amendment 4
    "full_identity_sharp_balanced": (["--qe-injection", "identity", "--qe-tau-max", "12", "--qe-tau-init", "10",
                                      "--qe-balance"], "instance"),                                # amendment 5
    "full_identity_long": (["--qe-injection", "identity"], "instance_long"),                       # amendment 6
    "no_qe_long": (["--no-query-enhancement"], "instance_long"),                                  # amendment 6
    "full_balanced_xl": (["--qe-injection", "identity", "--qe-tau-max", "12", "--qe-tau-init", "10", "--qe-balance"],
                         "instance_xxl"),                                                         # amendment 7
    "no_qe_xl": (["--no-query-enhancement"], "instance_xxl"),                                    # amendment 7
}
INSTANCE_STAGES = ("instance", "instance_long", "instance_xl", "instance_xxl")
ARM_LABELS = {
    "full": "ISVOS (QE + MPF, instance stage)",
    "no_qe": "w/o QE",
    "no_mpf": "w/o MPF",
    "no_qe_mpf": "w/o QE & MPF",
    "full_no_instance_stage": "ISVOS w/o instance stage (Table 4)",
    "full_identity": "ISVOS, identity injection (amendment 3)",
    "full_identity_sharp": "ISVOS, identity injection, tau 10 (amendment 4)",
    "full_identity_sharp_balanced": "ISVOS, identity injection, tau 10, balanced (amendment 5)",
    "full_identity_long": "ISVOS, identity injection, 8,500-it. instance stage (amendment 6)",
    "no_qe_long": "w/o QE, 8,500-it. instance stage (amendment 6)",
    "full_balanced_xl": "ISVOS, identity, tau 10, balanced, 17,000-it. instance stage, 960-it. main (amendment 7)",
    "no_qe_xl": "w/o QE, 17,000-it. instance stage, 960-it. main (amendment 7)",
}
# (a, b, question): the paired difference a - b, per video
COMPARISONS = (
    ("full", "no_qe", "does QE help (with MPF)?"),
    ("no_mpf", "no_qe_mpf", "does QE help (without MPF)?"),
    ("full", "no_mpf", "does MPF help (with QE)?"),
    ("no_qe", "no_qe_mpf", "does MPF help (without QE)?"),
    ("full", "no_qe_mpf", "do QE and MPF together help?"),
    ("full", "full_no_instance_stage", "does the instance stage help (Table 4)?"),
    ("full_identity", "no_qe", "does QE help with the identity injection? (amendment 3)"),
    ("full_identity", "full", "identity vs cosine injection (amendment 3)"),
    ("full_identity_sharp", "no_qe", "does QE help with the sharp identity injection? (amendment 4)"),
    ("full_identity_sharp", "full_identity", "tau 10 vs tau 2 (amendment 4)"),
    ("full_identity_sharp_balanced", "no_qe", "does QE help with balanced injected channels? (amendment 5)"),
    ("full_identity_sharp_balanced", "full_identity_sharp", "balanced vs not (amendment 5)"),
    ("full_identity_long", "no_qe_long", "does QE help after the longer instance stage? (amendment 6)"),
    ("full_identity_long", "full_identity", "longer vs shorter instance stage, with QE (amendment 6)"),
    ("no_qe_long", "no_qe", "longer vs shorter instance stage, without QE (amendment 6)"),
    ("full_balanced_xl", "no_qe_xl", "does QE help after far longer instance and main stages? (amendment 7)"),
    ("no_qe_xl", "no_qe_long", "17,000-it. instance + 960-it. main vs 8,500 + 320, without QE (amendment 7)"),
)
# the arms whose QE health is measured (flattened-map J&F), files qe_health/<arm>-<seed>.json
QE_HEALTH_ARMS = ("full", "full_identity", "full_identity_sharp", "full_identity_sharp_balanced", "full_identity_long",
                  "full_balanced_xl")
BOOTSTRAP_RESAMPLES = 10_000


# --- running -----------------------------------------------------------------------------------------------------
@dataclass
class Task:
    name: str
    command: list[str]
    done_marker: Path
    needs: list[str] = field(default_factory=list)


def cli(*args: str) -> list[str]:
    return ["nice", "-n", "10", sys.executable, "-m", "isvos_lite.cli", *args]


def plan_tasks(world: Path, runs: Path, seeds) -> list[Task]:
    tasks: list[Task] = []
    instance_dir = runs / "instance"
    tasks.append(Task(
        "instance",
        cli("train", "--preset", "lite", "--data", str(world), "--out", str(instance_dir), "--stage", "instance",
            "--instance-iters", str(INSTANCE_ITERS), "--seed", str(INSTANCE_SEED), "--threads", "1", "--quiet",
            "--val-every", "500", "--val-instance-images", "200", "--checkpoint-every", "100"),
        instance_dir / "model.safetensors"))
    # amendments 6 and 7: the stage continued, each time from the previous one's weights with a fresh optimizer and
    # schedule (seed 0, shared): instance_long (8,500 iterations in all), instance_xl (14,500), instance_xxl (17,000)
    for name, previous, iters, val_every in (("instance_long", "instance", INSTANCE_LONG_ITERS, 1000),
                                             ("instance_xl", "instance_long", INSTANCE_XL_ITERS, 2000),
                                             ("instance_xxl", "instance_xl", INSTANCE_XXL_ITERS, INSTANCE_XXL_ITERS)):
        tasks.append(Task(
            name,
            cli("train", "--preset", "lite", "--data", str(world), "--out", str(runs / name), "--stage", "instance",
                "--instance-iters", str(iters), "--seed", str(INSTANCE_SEED), "--threads", "1", "--quiet",
                "--val-every", str(val_every), "--val-instance-images", "200", "--checkpoint-every", "100",
                "--init-instance", str(runs / previous / "model.safetensors")),
            runs / name / "model.safetensors", [previous]))
    # the arms without an instance stage first: they can run while the instance stage trains
    ordered_arms = sorted(ARMS, key=lambda arm: ARMS[arm][1] is not None)
    for seed in seeds:
        for arm in ordered_arms:
            options, instance_stage = ARMS[arm]
            train_dir = runs / f"{arm}-{seed}"
            main_iters = ARM_MAIN_ITERS.get(arm, MAIN_ITERS)
            command = cli("train", "--preset", "lite", "--data", str(world), "--out", str(train_dir), "--stage", "main",
                          "--main-iters", str(main_iters), "--seed", str(seed), "--threads", "1", "--quiet",
                          "--val-every", str(main_iters), "--checkpoint-every", "80", *options)
            needs = []
            if instance_stage is not None:
                command += ["--init-instance", str(runs / instance_stage / "model.safetensors")]
                needs.append(instance_stage)
            tasks.append(Task(f"train-{arm}-{seed}", command, train_dir / "model.safetensors", needs))
            for split in SPLITS:
                eval_dir = runs / "eval" / f"{arm}-{seed}" / split
                tasks.append(Task(
                    f"eval-{arm}-{seed}-{split}",
                    cli("eval", "--checkpoint", str(train_dir / "model.safetensors"), "--davis", str(world),
                        "--split", split, "--out", str(eval_dir), "--workers", "1", "--no-amp"),   # fp32, as pre-registered
                    eval_dir / f"per-sequence_results-{split}.csv", [f"train-{arm}-{seed}"]))
        for arm in QE_HEALTH_ARMS:
            qe_out = runs / "qe_health" / f"{arm}-{seed}.json"
            tasks.append(Task(
                f"qe-health-{arm}-{seed}",
                cli("qe-health", "--checkpoint", str(runs / f"{arm}-{seed}" / "model.safetensors"), "--davis",
                    str(world), "--splits", "val", "lookalike", "--threads", "1", "--json", "--out", str(qe_out)),
                qe_out, [f"train-{arm}-{seed}"]))
            stats_out = runs / "qe_health" / f"{arm}-{seed}-stats.json"
            tasks.append(Task(
                f"qe-stats-{arm}-{seed}",
                cli("qe-health", "--checkpoint", str(runs / f"{arm}-{seed}" / "model.safetensors"), "--davis",
                    str(world), "--splits", "val", "lookalike", "--no-jf", "--threads", "1", "--json", "--out",
                    str(stats_out)),
                stats_out, [f"train-{arm}-{seed}"]))
    # the QE health of the first seed's full model (the shipped one) comes with its seed; the others after every
    # arm of every seed, so that a run cut short still has the whole table for the seeds it reached
    first = {f"qe-health-{arm}-{seeds[0]}" for arm in QE_HEALTH_ARMS}
    later = [t for t in tasks if t.name.startswith("qe-health-") and t.name not in first]
    return [t for t in tasks if t not in later] + later


def task_arm(name: str) -> str | None:
    """The arm a task belongs to; None for an instance stage."""
    if name in INSTANCE_STAGES:
        return None
    for arm in ARMS:
        if name.startswith((f"train-{arm}-", f"eval-{arm}-", f"qe-health-{arm}-", f"qe-stats-{arm}-")):
            return arm
    raise ValueError(f"task {name!r} belongs to no arm")


def run_task(task: Task, logs: Path) -> tuple[str, int, float]:
    logs.mkdir(parents=True, exist_ok=True)
    command = list(task.command)
    train_out = None
    if "train" in command:
        train_out = Path(command[command.index("--out") + 1])
        if (train_out / "checkpoints" / "latest.json").exists():
            command.append("--resume")                      # continue an interrupted training
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg")
    start = time.time()
    with open(logs / f"{task.name}.log", "a") as log:
        log.write(f"\n$ {' '.join(command)}\n")
        log.flush()
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    return task.name, code, time.time() - start


def is_done(task: Task) -> bool:
    if not task.done_marker.exists():
        return False
    if task.name.startswith(("train-", "instance")):
        meta = json.loads(task.done_marker.with_suffix(".json").read_text()).get("meta", {})
        wanted = "instance" if task.name in INSTANCE_STAGES else "main"
        return meta.get("stage") == wanted
    return True


def run(args: argparse.Namespace) -> int:
    world, runs = Path(args.world), Path(args.runs)
    tasks = plan_tasks(world, runs, args.seeds)
    by_name = {t.name: t for t in tasks}
    if args.arms:                                   # only these arms' tasks and every task they need
        wanted = {t.name for t in tasks if task_arm(t.name) in args.arms}
        pending = list(wanted)
        while pending:
            for need in by_name[pending.pop()].needs:
                if need not in wanted:
                    wanted.add(need)
                    pending.append(need)
        tasks = [t for t in tasks if t.name in wanted]
    finished = {t.name for t in tasks if is_done(t)}
    failed: set[str] = set()
    print(f"{len(tasks)} tasks, {len(finished)} already done", flush=True)
    running: dict = {}
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        while True:
            ready = [t for t in tasks if t.name not in finished | failed | set(running)
                     and all(n in finished for n in t.needs) and not any(n in failed for n in t.needs)]
            while ready and len(running) < args.jobs:
                task = ready.pop(0)
                print(f"[{time.strftime('%H:%M:%S')}] start {task.name}", flush=True)
                running[task.name] = pool.submit(run_task, task, runs / "logs")
            if not running:
                break
            done, _ = wait(list(running.values()), return_when=FIRST_COMPLETED)
            for future in done:
                name, code, seconds = future.result()
                del running[name]
                ok = code == 0 and is_done(by_name[name])
                (finished if ok else failed).add(name)
                print(f"[{time.strftime('%H:%M:%S')}] {'done' if ok else 'FAILED'} {name} in {seconds / 60:.1f} min "
                      f"({len(finished)}/{len(tasks)})", flush=True)
    if failed:
        print(f"failed: {sorted(failed)}; see {runs / 'logs'}", file=sys.stderr)
        return 1
    return 0


# --- reporting ---------------------------------------------------------------------------------------------------
def per_video_jf(csv_path: Path) -> dict[str, float]:
    """{video: J&F in percent} from a per-sequence CSV (rows "<video>_<object id>", J-Mean, F-Mean in [0, 1])."""
    scores: dict[str, list[float]] = {}
    with open(csv_path) as f:
        for row in csv.DictReader(f):
            video = row["Sequence"].rsplit("_", 1)[0]
            scores.setdefault(video, []).append(50.0 * (float(row["J-Mean"]) + float(row["F-Mean"])))
    return {video: float(np.mean(values)) for video, values in scores.items()}


def object_mean_jf(csv_path: Path) -> float:
    """The split's J&F as the official global table reports it: the mean over all objects of (J + F) / 2."""
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    return float(np.mean([50.0 * (float(r["J-Mean"]) + float(r["F-Mean"])) for r in rows]))


def load_results(runs: Path, seeds) -> dict:
    """results[arm][seed][split] = {"jf": object-mean J&F, "videos": {video: J&F}} for every finished evaluation."""
    results: dict = {}
    for arm in ARMS:
        for seed in seeds:
            for split in SPLITS:
                path = runs / "eval" / f"{arm}-{seed}" / split / f"per-sequence_results-{split}.csv"
                if path.exists():
                    results.setdefault(arm, {}).setdefault(seed, {})[split] = {
                        "jf": object_mean_jf(path), "videos": per_video_jf(path)}
    return results


def paired_difference(results: dict, a: str, b: str, split: str, seeds, rng: np.random.Generator) -> dict | None:
    """Mean per-video difference a - b pooled over the seeds both arms have, with a video-bootstrap 95 % CI."""
    both = [s for s in seeds if split in results.get(a, {}).get(s, {}) and split in results.get(b, {}).get(s, {})]
    if not both:
        return None
    videos = sorted(set.intersection(*[set(results[a][s][split]["videos"]) & set(results[b][s][split]["videos"])
                                       for s in both]))
    diff = np.array([[results[a][s][split]["videos"][v] - results[b][s][split]["videos"][v] for v in videos]
                     for s in both])                                     # (seeds, videos)
    per_video = diff.mean(axis=0)                                        # seeds pooled: (videos,)
    picks = rng.integers(0, len(videos), size=(BOOTSTRAP_RESAMPLES, len(videos)))
    boot = per_video[picks].mean(axis=1)
    low, high = np.percentile(boot, [2.5, 97.5])
    return {"mean": float(per_video.mean()), "low": float(low), "high": float(high), "seeds": len(both),
            "videos": len(videos), "per_seed": [float(d.mean()) for d in diff],
            "wins": int((per_video > 0).sum()), "losses": int((per_video < 0).sum())}


def verdict(d: dict) -> str:
    if d["low"] > 0:
        return "helps (CI above 0)"
    if d["high"] < 0:
        return "hurts (CI below 0)"
    return "not distinguishable from 0"


def report(args: argparse.Namespace) -> int:
    runs = Path(args.runs)
    seeds = args.seeds
    results = load_results(runs, seeds)
    rng = np.random.default_rng(0)
    lines = ["# Teaching-scale Table 3 / Table 4: results", "",
             "Generated by `python scripts/table3.py report` from the evaluation folders of "
             f"`python scripts/table3.py run` (protocol: [table3_protocol.md](table3_protocol.md)). "
             "Every arm and seed that finished is listed; nothing is left out.", ""]
    counts = {arm: sum(len(results.get(arm, {}).get(s, {})) for s in seeds) for arm in ARMS}
    expected = len(seeds) * len(SPLITS)
    missing = [f"{arm} ({counts[arm]}/{expected} seed-split evaluations)" for arm in ARMS if counts[arm] < expected]
    if missing:
        lines += ["**Incomplete:** " + "; ".join(missing) + ".", ""]
    lines += ["## J&F per arm (official-equivalent DAVIS 2017 J&F, %, mean over objects of the split)", "",
              "| arm | " + " | ".join(SPLITS) + " |", "|---|" + "---|" * len(SPLITS)]
    for arm in ARMS:
        cells = []
        for split in SPLITS:
            values = [results[arm][s][split]["jf"] for s in seeds if split in results.get(arm, {}).get(s, {})]
            if not values:
                cells.append("—")
                continue
            spread = f" ± {np.std(values, ddof=1):.1f}" if len(values) > 1 else ""
            cells.append(f"**{np.mean(values):.1f}**{spread} ({', '.join(f'{v:.1f}' for v in values)})")
        lines.append(f"| {ARM_LABELS[arm]} | " + " | ".join(cells) + " |")
    lines += ["", "Cells: mean over seeds ± standard deviation over seeds (each seed's value, seeds "
              f"{', '.join(map(str, seeds))}).", "",
              "## Pre-registered comparisons: per-video paired differences, seeds pooled", "",
              "| comparison | question | " + " | ".join(SPLITS) + " |", "|---|---|" + "---|" * len(SPLITS)]
    summary = {}
    for a, b, question in COMPARISONS:
        cells = []
        for split in SPLITS:
            d = paired_difference(results, a, b, split, seeds, rng)
            summary[f"{a}-{b}-{split}"] = d
            cells.append("—" if d is None else
                         f"{d['mean']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}] {verdict(d)}; "
                         f"{d['wins']}/{d['videos']} videos better; per seed "
                         + ", ".join(f"{v:+.1f}" for v in d["per_seed"]))
        lines.append(f"| {ARM_LABELS[a]} − {ARM_LABELS[b]} | {question} | " + " | ".join(cells) + " |")
    lines += ["", "Cells: mean of the per-video J&F difference (each video's difference averaged over the seeds "
              "both arms have) [95 % bootstrap CI over videos, "
              f"{BOOTSTRAP_RESAMPLES:,} resamples]; the verdict follows the protocol's rule: an effect is claimed "
              "only when the CI excludes 0. The CI resamples videos with the seeds averaged, so it does not contain the "
              "seed-to-seed spread of training; the per-seed means show that spread (an effect whose per-seed means "
              "disagree in sign is fragile whatever its CI).", ""]
    qe_rows = []
    for arm in QE_HEALTH_ARMS:
        for seed in seeds:
            path = runs / "qe_health" / f"{arm}-{seed}.json"
            if path.exists():
                data = json.loads(path.read_text())
                # the key-change statistic came later: older QE-health files have it in a statistics-only file
                stats_path = runs / "qe_health" / f"{arm}-{seed}-stats.json"
                stats = json.loads(stats_path.read_text())["splits"] if stats_path.exists() else {}
                for split, entry in data["splits"].items():
                    key_change = entry.get("qe_key_change", stats.get(split, {}).get("qe_key_change"))
                    qe_rows.append(f"| {ARM_LABELS[arm]} | {seed} | {split} | {100 * entry['qe_saturated']:.1f} % | "
                                   f"{entry['qe_map_correlation']:.3f} | {entry['qe_mask_agreement']:.3f} | "
                                   + ("— | " if key_change is None else f"{100 * key_change:.1f} % | ")
                                   + f"{entry['jf']:.2f} | {entry['jf_flattened']:.2f} | {entry['delta_jf']:+.2f} |")
    if qe_rows:
        lines += ["## QE health of the models with QE (`isvos-lite qe-health`)", "",
                  "| arm | seed | split | saturated | map-map correlation | map-own-mask agreement | key change, maps "
                  "flattened | J&F | J&F, maps flattened | Δ |", "|---|---|---|---|---|---|---|---|---|---|", *qe_rows, "",
                  "Key change: ‖key − key with the maps flattened‖ / ‖key‖ over the statistics frames (how much the "
                  "query key depends on the maps at all).",
                  "J&F here is the training-validation scorer (same protocol as the official one, all videos).", ""]
    text = "\n".join(lines) + "\n"
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, out)
    (out.with_suffix(".json")).write_text(json.dumps({"results": {a: {str(s): {sp: v["jf"] for sp, v in d.items()}
                                                                     for s, d in r.items()} for a, r in results.items()},
                                                      "comparisons": summary}, indent=1))
    print(text)
    if args.figure:
        plot_differences(summary, Path(args.figure))
    return 0


def plot_differences(summary: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(SPLITS), figsize=(5.5 * len(SPLITS), 1.2 + 0.55 * len(COMPARISONS)), sharey=True)
    for ax, split in zip(axes, SPLITS):
        labels, means, lows, highs = [], [], [], []
        for a, b, _ in COMPARISONS:
            d = summary.get(f"{a}-{b}-{split}")
            if d is None:
                continue
            labels.append(f"{ARM_LABELS[a].split(' (')[0]}\n− {ARM_LABELS[b].split(' (')[0]}")
            means.append(d["mean"]), lows.append(d["low"]), highs.append(d["high"])
        y = np.arange(len(labels))
        # green: CI above 0, red: below 0, grey: includes 0 (the protocol's rule)
        colours = ["tab:green" if lo > 0 else "tab:red" if hi < 0 else "tab:grey" for lo, hi in zip(lows, highs)]
        for yi, m, lo, hi, c in zip(y, means, lows, highs, colours):
            ax.errorbar([m], [yi], xerr=[[m - lo], [hi - m]], fmt="o", capsize=3, color=c)
        ax.axvline(0, color="black", linewidth=1)
        ax.set_yticks(y, labels, fontsize=9)
        ax.grid(True, axis="x", alpha=0.3)
        ax.set_title(f"{split}: paired ΔJ&F, 95 % CI")
        ax.set_xlabel("J&F difference (points)")
    axes[0].invert_yaxis()                      # the first comparison on top (shared y axis)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "report"):
        p = sub.add_parser(name)
        p.add_argument("--world", default="data/world", help="the teaching world (isvos-lite toy-data --seed 0)")
        p.add_argument("--runs", default="runs/table3", help="folder of the runs")
        p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
        if name == "run":
            p.add_argument("--jobs", type=int, default=2, help="tasks at a time (one thread each)")
            p.add_argument("--arms", nargs="+", choices=list(ARMS), default=None,
                           help="run only these arms' tasks (default: all); e.g. an arm added by an amendment")
        else:
            p.add_argument("--out", default="docs/experiments/table3_results.md")
            p.add_argument("--figure", default=None, help="also plot the paired differences to this PNG")
    args = parser.parse_args()
    return run(args) if args.command == "run" else report(args)


if __name__ == "__main__":
    sys.exit(main())
