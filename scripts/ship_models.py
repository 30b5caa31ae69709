"""Reproduce the shipped matched set of `lite` checkpoints from the instance checkpoint, and score every model.

    python scripts/ship_models.py run    --world data/world --runs runs/ship --jobs 2
    python scripts/ship_models.py report --world data/world --runs runs/ship --out docs/experiments/shipping_results.md

The recipe is fixed in ``docs/experiments/shipping_protocol.md``. ``run`` executes every task not yet finished
(resumable: stop it and start it again), ``--jobs`` at a time, each a ``nice``d subprocess at one thread:

    train-<arm>           isvos-lite train --stage main --main-iters 960 --init-instance checkpoints/lite_instance.safetensors
    eval-<arm>-<split>    isvos-lite eval on every video of the split (official-equivalent J&F, per-sequence CSV);
                          its run record also holds the copy-the-first-mask baseline of the same videos

``report`` writes one table (J&F per arm and split, the copy baseline beside it) from the evaluations' CSVs.
``--install`` copies the trained models to ``checkpoints/`` under their shipped names, with a JSON that says how
each was made.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

SEED = 0
MAIN_ITERS = 960
INSTANCE_CHECKPOINT = "checkpoints/lite_instance.safetensors"
SPLITS = ("val", "lookalike", "heldout", "real")
# shipped name -> extra train options
ARMS: dict[str, list[str]] = {
    "lite": [],
    "lite_no_qe": ["--no-query-enhancement"],
    "lite_no_mpf": ["--no-multi-path-fusion"],
    "lite_no_qe_mpf": ["--no-query-enhancement", "--no-multi-path-fusion"],
    "lite_literal": ["--qe-injection", "literal"],
}
DESCRIPTIONS = {
    "lite": "ISVOS: QE (centred bounded cosine injection + alignment term) + MPF",
    "lite_no_qe": "w/o QE (Table 3)",
    "lite_no_mpf": "w/o MPF (Table 3)",
    "lite_no_qe_mpf": "w/o QE & MPF (Table 3)",
    "lite_literal": "ISVOS with the literal §3.2 injection sigmoid(Q_g·q̃_vos/√C)",
}


def isvos_lite() -> str:
    """The isvos-lite entry point of the running interpreter's environment (works without an activated venv)."""
    beside = Path(sys.executable).parent / "isvos-lite"
    return str(beside) if beside.exists() else "isvos-lite"


def train_command(arm: str, world: Path, runs: Path, instance: str) -> list[str]:
    return [isvos_lite(), "train", "--preset", "lite", "--data", str(world), "--out", str(runs / arm),
            "--stage", "main", "--main-iters", str(MAIN_ITERS), "--seed", str(SEED), "--threads", "1",
            "--val-every", "320", "--checkpoint-every", "80", "--init-instance", instance, "--quiet", *ARMS[arm]]


def eval_dir(runs: Path, arm: str, split: str) -> Path:
    return runs / "eval" / f"{arm}-{split}"


def eval_command(arm: str, split: str, world: Path, runs: Path) -> list[str]:
    return [isvos_lite(), "eval", "--checkpoint", str(runs / arm / "model.safetensors"), "--davis", str(world),
            "--split", split, "--out", str(eval_dir(runs, arm, split)), "--threads", "1", "--workers", "1"]


def train_done(runs: Path, arm: str) -> bool:
    return (runs / arm / "model.safetensors").exists()


def eval_done(runs: Path, arm: str, split: str) -> bool:
    return (eval_dir(runs, arm, split) / f"per-sequence_results-{split}.csv").exists()


def run_logged(name: str, command: list[str], logs: Path) -> tuple[str, int, float]:
    logs.mkdir(parents=True, exist_ok=True)
    start = time.time()
    with open(logs / f"{name}.log", "w") as log:
        code = subprocess.call(["nice", "-n", "2", *command], stdout=log, stderr=subprocess.STDOUT)
    return name, code, time.time() - start


def run(args: argparse.Namespace) -> int:
    runs, world = Path(args.runs), Path(args.world)
    splits = [s for s in args.splits if (world / "ImageSets" / "2017" / f"{s}.txt").exists()]
    skipped = sorted(set(args.splits) - set(splits))
    if skipped:
        print(f"splits not in {world}: {', '.join(skipped)} (skipped)")
    arms = args.arms or list(ARMS)
    pending_train = [a for a in arms if not train_done(runs, a)]
    pending_eval = [(a, s) for a in arms for s in splits if not eval_done(runs, a, s)]
    logs = runs / "logs"
    running = {}
    with ThreadPoolExecutor(args.jobs) as pool:
        while pending_train or pending_eval or running:
            while len(running) < args.jobs:
                ready = [(a, s) for a, s in pending_eval if train_done(runs, a)]
                if ready:                     # finish what a trained model needs before starting the next training
                    arm, split = ready[0]
                    pending_eval.remove((arm, split))
                    name, command = f"eval-{arm}-{split}", eval_command(arm, split, world, runs)
                elif pending_train:
                    arm = pending_train.pop(0)
                    name, command = f"train-{arm}", train_command(arm, world, runs, args.instance)
                else:
                    break
                print(f"{time.strftime('%H:%M:%S')} start {name}", flush=True)
                running[pool.submit(run_logged, name, command, logs)] = name
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                name, code, seconds = future.result()
                del running[future]
                status = "ok" if code == 0 else f"FAILED (exit {code}, see {logs / (name + '.log')})"
                print(f"{time.strftime('%H:%M:%S')} {name}: {status} in {seconds / 60:.1f} min", flush=True)
                if code != 0:
                    pending_eval = [(a, s) for a, s in pending_eval if f"train-{a}" != name]
    return 0


def split_jf(runs: Path, arm: str, split: str) -> tuple[float, float | None, int] | None:
    """(J&F %, copy-baseline J&F % or None, number of objects) of one evaluation, or None if it is missing."""
    folder = eval_dir(runs, arm, split)
    path = folder / f"global_results-{split}.csv"
    if not path.exists():
        return None
    with open(path) as f:
        row = next(csv.DictReader(f))
    with open(folder / f"per-sequence_results-{split}.csv") as f:
        objects = sum(1 for _ in csv.DictReader(f))
    copy = None
    record = folder / "run.json"
    if record.exists():
        meta = json.loads(record.read_text())
        baseline = meta.get("copy_baseline") or {}
        copy = baseline.get("J&F-Mean")
        copy = None if copy is None else 100 * float(copy)
    return 100 * float(row["J&F-Mean"]), copy, objects


def report(args: argparse.Namespace) -> int:
    runs = Path(args.runs)
    lines = ["| checkpoint | " + " | ".join(args.splits) + " |", "|---|" + "---|" * len(args.splits)]
    copy_row = {}
    for arm in ARMS:
        cells = []
        for split in args.splits:
            result = split_jf(runs, arm, split)
            if result is None:
                cells.append("—")
                continue
            jf, copy, objects = result
            cells.append(f"{jf:.1f}")
            if copy is not None:
                copy_row[split] = f"{copy:.1f}"
        lines.append(f"| `{arm}` | " + " | ".join(cells) + " |")
    lines.append("| copy the first mask | " + " | ".join(copy_row.get(s, "—") for s in args.splits) + " |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")
    if args.install:
        for arm in ARMS:
            source = runs / arm
            if not (source / "model.safetensors").exists():
                print(f"{arm}: not trained, not installed")
                continue
            meta = json.loads((source / "model.json").read_text())
            meta.setdefault("meta", {})["made_by"] = {
                "command": " ".join(train_command(arm, Path(args.world), runs, args.instance)),
                "instance_checkpoint": args.instance, "seed": SEED, "main_iterations": MAIN_ITERS,
                "protocol": "docs/experiments/shipping_protocol.md", "description": DESCRIPTIONS[arm],
                "jf": {s: round(r[0], 2) for s in args.splits if (r := split_jf(runs, arm, s))},
            }
            shutil.copyfile(source / "model.safetensors", Path("checkpoints") / f"{arm}.safetensors")
            Path("checkpoints", f"{arm}.json").write_text(json.dumps(meta, indent=2) + "\n")
            print(f"installed checkpoints/{arm}.safetensors")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "report"):
        p = sub.add_parser(name)
        p.add_argument("--world", default="data/world3")
        p.add_argument("--runs", default="runs/ship")
        p.add_argument("--instance", default=INSTANCE_CHECKPOINT)
        p.add_argument("--splits", nargs="+", default=list(SPLITS))
    run_parser = sub.choices["run"]
    run_parser.add_argument("--jobs", type=int, default=2)
    run_parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=None)
    report_parser = sub.choices["report"]
    report_parser.add_argument("--out", default=None, help="write the table (markdown) here")
    report_parser.add_argument("--install", action="store_true", help="copy the models to checkpoints/ with their JSON")
    args = parser.parse_args(argv)
    if args.command == "run":
        if not Path(args.instance).exists():
            raise SystemExit(f"--instance {args.instance} does not exist: train the instance stage first "
                             "(docs/experiments/shipping_protocol.md)")
        return run(args)
    return report(args)


if __name__ == "__main__":
    os.environ.setdefault("ISVOS_LITE_THREADS", "1")
    sys.exit(main())
