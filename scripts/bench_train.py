"""Training speed of a recipe's stage: seconds per iteration, the arithmetic of one iteration, and this machine's ceiling.

    python scripts/bench_train.py --data data/world --preset lite --stage main --iterations 12 --threads 2

Runs the real trainer (``isvos_lite.train.trainer.Trainer``, the preset's data pipeline with its DataLoader worker,
random initial weights) for ``--iterations`` steps of one stage into a temporary folder, times every step (data
loading included, as ``metrics.jsonl``'s ``sec_per_it`` does) and counts one step's arithmetic with
``torch.utils.flop_counter`` (forward + backward of the convolutions and matrix products). ``GFLOP per iteration /
ceiling`` (the GFLOP/s of one large dense convolution at the same thread count, as ``isvos-lite benchmark --flops``)
is the time no rewrite of the same arithmetic beats on this machine; the achieved GFLOP/s says how far from it the
step is. The first ``--warmup`` steps (at least 1) are not timed; the first one is counted.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

import numpy as np
import torch


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="a teaching world (isvos-lite data --out DIR)")
    parser.add_argument("--preset", default="lite", help="training preset (default: lite)")
    parser.add_argument("--stage", default="main", choices=("instance", "static", "main"))
    parser.add_argument("--iterations", type=int, default=12, help="steps to run, warm-up included (default 12)")
    parser.add_argument("--warmup", type=int, default=2,
                        help="untimed steps at the start, at least 1 (the first is the one whose arithmetic is counted)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: isvos_lite.threads' choice)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.warmup < 1:
        raise SystemExit(f"--warmup must be at least 1 (the first step is counted, not timed), got {args.warmup}")
    if args.iterations <= args.warmup:
        raise SystemExit(f"--iterations ({args.iterations}) must be larger than --warmup ({args.warmup}); "
                         "raise --iterations")

    from torch.utils.flop_counter import FlopCounterMode

    from isvos_lite.commands.benchmark import conv_ceiling_gflops, load_average
    from isvos_lite.config import get_preset
    from isvos_lite.threads import use_threads
    from isvos_lite.train.config import get_train_preset
    from isvos_lite.train.batches import DataSources
    from isvos_lite.train.trainer import Trainer

    threads_note = use_threads(args.threads)
    cfg = get_train_preset(args.preset)
    stage_cfg = cfg.stage(args.stage)
    stage_cfg.iterations = args.iterations
    cfg = cfg.replace(val_every=0, checkpoint_every=10**9, log_every=10**9)
    model_cfg = get_preset(cfg.model_preset)

    times, gflop = [], {}
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(cfg, model_cfg, DataSources.discover(args.data), out, plan=(args.stage,),
                          progress=False)
        step_fn = trainer.train_step
        last = [time.perf_counter()]

        def timed_step(stage, step, batch, optimizer, scaler):
            if step == 0:                          # the first step is never timed: count its arithmetic instead
                counter = FlopCounterMode(display=False, depth=1)
                with counter:
                    record = step_fn(stage, step, batch, optimizer, scaler)
                gflop["per_iteration"] = counter.get_total_flops() / 1e9
            else:
                record = step_fn(stage, step, batch, optimizer, scaler)
            now = time.perf_counter()
            if step >= args.warmup:
                times.append(now - last[0])        # since the previous step ended: data loading + this step
            last[0] = now
            return record

        trainer.train_step = timed_step
        trainer.run()
    sec = float(np.median(times))
    ceiling = conv_ceiling_gflops()
    result = {
        "preset": args.preset, "stage": args.stage, "timed_iterations": len(times), "threads": torch.get_num_threads(),
        "threads_chosen_by": threads_note, "load_average": load_average(),
        "sec_per_it_median": round(sec, 3), "gflop_per_iteration": round(gflop["per_iteration"], 2),
        "achieved_gflops": round(gflop["per_iteration"] / sec, 1), "conv_ceiling_gflops": round(ceiling, 1),
        "lower_bound_sec_per_it": round(gflop["per_iteration"] / ceiling, 3),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.preset} {args.stage} stage: {sec:.3f} s per iteration (median of {len(times)}), "
              f"{result['threads']} threads, load average {result['load_average']}")
        print(f"  {result['gflop_per_iteration']:.2f} GFLOP per iteration (forward + backward) at "
              f"{result['achieved_gflops']} GFLOP/s; dense-conv ceiling {result['conv_ceiling_gflops']} GFLOP/s, so no "
              f"rewrite of this arithmetic runs faster than {result['lower_bound_sec_per_it']:.3f} s per iteration here")
    return 0


if __name__ == "__main__":
    sys.exit(main())
