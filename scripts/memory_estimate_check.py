"""The training memory estimate against the real peak: ``python scripts/memory_estimate_check.py --preset paper ...``.

It runs ``isvos-lite train`` with the options given for ``--iters`` iterations (``--workers 0``, no validation)
in a fresh process, reads the estimate that the command prints before its first step, and measures the process's
peak resident memory (``ru_maxrss``). Prints the estimate, the measured peak and their ratio.

Example (the numbers in the README's training section)::

    python scripts/memory_estimate_check.py --data data/world --preset lite --crop-size 160 --batch-size 4
    python scripts/memory_estimate_check.py --data data/world --preset paper --backbone-norm bn \\
        --crop-size 128 --batch-size 1 --instance-batch-size 1 --clip-frames 3
"""

from __future__ import annotations

import argparse
import re
import resource
import subprocess
import sys
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="DAVIS-format root, e.g. data/world")
    parser.add_argument("--iters", type=int, default=2, help="training iterations measured (default 2)")
    parser.add_argument("--stage", nargs="+", default=["main"], help="stages (default: main)")
    known, train_args = parser.parse_known_args(argv)
    common = ["--data", known.data, "--stage", *known.stage, *train_args]
    with tempfile.TemporaryDirectory() as tmp:
        run = subprocess.run([sys.executable, "-m", "isvos_lite.cli", "train", "--out", str(Path(tmp) / "run"),
                              *common, "--iters", str(known.iters), "--workers", "0", "--val-every", "0",
                              "--max-memory", "100000", "--quiet"], capture_output=True, text=True)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    if run.returncode != 0:
        print(run.stderr[-3000:], file=sys.stderr)
        return run.returncode
    line = next(x for x in run.stderr.splitlines() if x.startswith("estimated peak memory:"))
    estimate = float(re.search(r"memory: ([0-9.]+) GiB", line).group(1)) * 2 ** 30
    gib = 2 ** 30
    print(f"{' '.join(train_args)}: {line.split(': ', 1)[1]}")
    print(f"measured peak {peak / gib:.2f} GiB; estimate / measured = {estimate / peak:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
