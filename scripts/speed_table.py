"""The README's speed table: where the time of a frame goes, in bf16 and in fp32, side by side.

    python scripts/speed_table.py --preset lite --frames 30 --threads 2

Runs ``isvos-lite benchmark --profile --flops --json`` once with ``--amp`` and once with ``--no-amp`` (each in its own
process, so neither warms the other's caches), then prints one markdown table: ms per frame and GFLOP/s of every
top-level module in each precision, and the GFLOP per frame (the same arithmetic in both). ``--rounds N`` alternates
the two N times and reports, per cell, the run whose total is the median (a whole run, so the rows add up). On a CPU
without native bf16 the ``--amp`` column shows emulated bf16, which is slower; that is why it is not the default there.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys


def run_benchmark(args, amp: bool) -> dict:
    command = [sys.executable, "-m", "isvos_lite.cli", "benchmark", "--preset", args.preset, "--height", str(args.height),
               "--width", str(args.width), "--frames", str(args.frames), "--objects", str(args.objects),
               "--profile", "--flops", "--json", "--amp" if amp else "--no-amp"]
    if args.threads is not None:
        command += ["--threads", str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"speed_table: {' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def median_run(runs: list[dict]) -> dict:
    return sorted(runs, key=lambda r: r["ms_per_frame"])[len(runs) // 2]


def table(bf16: dict, fp32: dict) -> str:
    lines = ["| part | ms per frame, bf16 | GFLOP/s, bf16 | ms per frame, fp32 | GFLOP/s, fp32 | GFLOP per frame |",
             "|---|---|---|---|---|---|"]
    gflop = fp32["gflop_per_frame"]
    for part, ms32 in fp32["profile_ms_per_frame"].items():
        ms16 = bf16["profile_ms_per_frame"][part]
        name = "decoder (MPF)" if part == "decoder" else part

        def rate(ms):
            return f"{gflop[part] / (ms / 1000):.1f}" if ms > 0 else "—"

        lines.append(f"| {name} | {ms16:,.1f} | {rate(ms16)} | {ms32:,.1f} | {rate(ms32)} | {gflop[part]:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="lite")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=854)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--objects", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads for both (default: the package's choice)")
    parser.add_argument("--rounds", type=int, default=1, help="alternating bf16 / fp32 runs (default 1)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        raise SystemExit(f"--rounds must be >= 1, got {args.rounds}")
    runs = {"bf16": [], "fp32": []}
    for _ in range(args.rounds):
        runs["bf16"].append(run_benchmark(args, amp=True))
        runs["fp32"].append(run_benchmark(args, amp=False))
    bf16, fp32 = median_run(runs["bf16"]), median_run(runs["fp32"])
    print(f"{args.preset} at {args.height}x{args.width}, {args.objects} objects, {args.frames} frames, "
          f"{fp32['threads']} threads, {args.rounds} round(s); load average {bf16['load_average']} (bf16 run), "
          f"{fp32['load_average']} (fp32 run); dense-conv ceiling {bf16['conv_ceiling_gflops']} GFLOP/s in bf16, "
          f"{fp32['conv_ceiling_gflops']} in fp32")
    print()
    print(table(bf16, fp32))
    return 0


if __name__ == "__main__":
    sys.exit(main())
