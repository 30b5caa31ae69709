"""isvos-lite next to Cutie-base on the same frames: ms per frame of each, alternating, medians, and the ratio.

    python scripts/bench_cutie.py --preset paper --height 480 --width 854 --frames 12 --objects 2 --rounds 3

Cutie (Cheng et al., CVPR 2024; PyPI ``rf-cutie``) runs in its own virtual environment, ``.venv-cutie`` (git-ignored,
made on first use with ``pip install torch==<this torch> rf-cutie``), so the project never depends on it. This script
starts that environment's python as a worker (``--worker``) which builds Cutie-base from the package's own base
config with random weights (its ResNets are built with ``pretrained=False``: no download). Both models see the same
synthetic frames (``isvos_lite.commands.benchmark.synthetic_video``), the same first mask with ``--objects`` objects,
memory every 5th frame, all objects together, I/O excluded; the first ``--warmup`` predicted frames of every round are
not timed. Each round runs the whole video through isvos-lite, then through Cutie (the other process waits on a
pipe), so load changes on a shared machine hit both alike; the result is the median over all timed frames.

Each side keeps its own defaults otherwise: isvos-lite the paper's protocol (16 memory frames, top-k 20), Cutie its
eval_config (5 working-memory frames, top-k 30, sensory memory updated every frame). ``make bench-cutie`` runs it.

``--flops`` also counts each model's arithmetic (GFLOP per predicted frame of convolutions and matrix products,
``torch.utils.flop_counter``, averaged over frames 1..N-1 of the same video in an extra, untimed pass). At equal
efficiency (GFLOP/s) the time ratio equals the GFLOP ratio, so a GFLOP ratio above a speed target says that the
target needs a different architecture, not a better implementation.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CUTIE_VENV = ROOT / ".venv-cutie"


# ------------------------------------------------------------------------------------------------ the Cutie worker
def build_cutie():
    """Cutie-base (its packaged config/model/base.yaml + eval_config.yaml) with random weights, in eval mode."""
    import cutie
    import cutie.model.utils.resnet as cutie_resnet
    from omegaconf import OmegaConf

    for name in ("resnet18", "resnet50"):            # the package asks for ImageNet weights (a download); no
        original = getattr(cutie_resnet, name)
        setattr(cutie_resnet, name, lambda *a, _f=original, **k: _f(*a, **{**k, "pretrained": False}))
    from cutie.model.cutie import CUTIE

    config = Path(list(cutie.__path__)[0]) / "config"               # a namespace package: no __file__
    cfg = OmegaConf.load(config / "eval_config.yaml")
    cfg.model = OmegaConf.load(config / "model" / "base.yaml")
    cfg.pop("defaults", None)
    cfg.pop("hydra", None)
    cfg.mem_every = 5
    cfg.use_long_term = False
    cfg.max_internal_size = -1
    cfg.flip_aug = False
    return CUTIE(cfg).eval(), cfg


def worker() -> int:
    """Serve timing requests on stdin: one JSON line {frames: .npz path, threads, warmup} -> one JSON line back."""
    import warnings

    import numpy as np
    import torch

    warnings.filterwarnings("ignore", category=FutureWarning)      # Cutie's torch.cuda.amp.autocast calls
    from cutie.inference.inference_core import InferenceCore

    network, cfg = build_cutie()
    params = sum(p.numel() for p in network.parameters())
    print(json.dumps({"ready": True, "params": params}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        torch.set_num_threads(request["threads"])
        data = np.load(request["frames"])
        frames, first_mask = data["frames"], torch.from_numpy(data["first_mask"].astype(np.int64))
        objects = [int(v) for v in np.unique(data["first_mask"]) if v != 0]
        if request.get("flops"):
            print(json.dumps({"gflop_per_frame": cutie_gflop_per_frame(network, cfg, frames, first_mask, objects)}),
                  flush=True)
            continue
        core = InferenceCore(network, cfg)
        times = []
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(request.get("amp")))
        with torch.inference_mode(), autocast:
            for t, frame in enumerate(frames):
                image = torch.from_numpy(frame).permute(2, 0, 1).float() / 255.0     # made before the clock starts
                start = time.perf_counter()
                if t == 0:
                    prob = core.step(image, first_mask, objects=objects)
                else:
                    prob = core.step(image)
                core.output_prob_to_mask(prob)
                if t > request["warmup"]:
                    times.append(time.perf_counter() - start)
        print(json.dumps({"times": times}), flush=True)
    return 0


def cutie_gflop_per_frame(network, cfg, frames, first_mask, objects) -> float:
    """GFLOP per predicted frame (frames 1..N-1) of Cutie's InferenceCore on the same video, like ours."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from cutie.inference.inference_core import InferenceCore

    for p in network.parameters():                 # FlopCounterMode's module tracker and inference mode disagree
        p.requires_grad_(False)
    core = InferenceCore(network, cfg)
    counter = FlopCounterMode(display=False, depth=1)
    images = [torch.from_numpy(frame).permute(2, 0, 1).float() / 255.0 for frame in frames]
    with torch.inference_mode():
        core.step(images[0], first_mask, objects=objects)
        with counter:                              # entered once: entering a FlopCounterMode resets its counts
            for image in images[1:]:
                core.output_prob_to_mask(core.step(image))
    return counter.get_total_flops() / (len(frames) - 1) / 1e9


# ------------------------------------------------------------------------------------------------ the driver
def ensure_cutie_venv() -> Path:
    python = CUTIE_VENV / "bin" / "python"
    if python.exists():
        return python
    import torch

    version = torch.__version__.split("+")[0]
    print(f"creating {CUTIE_VENV} (pip install torch=={version} rf-cutie) ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(CUTIE_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", f"torch=={version}", "rf-cutie"], check=True)
    return python


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def isvos_times(model, frames, first_mask, warmup: int, amp: bool = False) -> list[float]:
    from isvos_lite.inference import VideoSegmenter

    seg = VideoSegmenter(model, max_internal_size=None, amp=amp)  # paper protocol: mem every 5, 16 frames, top-k 20
    times = []
    for t, frame in enumerate(frames):
        start = time.perf_counter()
        probs = seg.step(frame, first_mask if t == 0 else None)
        seg.probs_to_mask(probs)
        if t > warmup:
            times.append(time.perf_counter() - start)
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=854)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--objects", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2, help="untimed predicted frames at the start of each round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (isvos-lite, then Cutie)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for both (default: the package's "
                        "policy, isvos_lite.threads)")
    parser.add_argument("--flops", action="store_true", help="also count GFLOP per predicted frame of both models")
    parser.add_argument("--amp", action="store_true",
                        help="run both models under bf16 autocast (CPU); default: both in fp32")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker()

    import numpy as np
    import torch

    from isvos_lite.commands.benchmark import synthetic_video
    from isvos_lite.config import get_preset
    from isvos_lite.model.isvos import ISVOS
    try:
        from isvos_lite.threads import resolve_threads
        threads, why = resolve_threads(args.threads)
    except ImportError:                                            # an older checkout (timing "before" a change)
        threads, why = args.threads or 1, "--threads"
    torch.set_num_threads(threads)
    video = synthetic_video(args.height, args.width, args.objects)
    pairs = [next(video) for _ in range(args.frames)]
    frames, first_mask = np.stack([f for f, _ in pairs]), pairs[0][1]
    torch.manual_seed(0)
    model = ISVOS(get_preset(args.preset)).eval()

    python = ensure_cutie_venv()
    with tempfile.TemporaryDirectory() as tmp:
        frames_file = os.path.join(tmp, "frames.npz")
        np.savez(frames_file, frames=frames, first_mask=first_mask)
        cutie = subprocess.Popen([str(python), __file__, "--worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True, cwd=tmp)
        try:
            hello = json.loads(cutie.stdout.readline() or "{}")
            if not hello.get("ready"):
                raise RuntimeError(f"the Cutie worker in {CUTIE_VENV} did not start (see its error above)")
            ours, theirs, loads = [], [], []
            for _ in range(args.rounds):
                loads.append(load_average())
                ours += isvos_times(model, frames, first_mask, args.warmup, amp=args.amp)
                cutie.stdin.write(json.dumps({"frames": frames_file, "threads": threads, "warmup": args.warmup,
                                              "amp": args.amp}) + "\n")
                cutie.stdin.flush()
                theirs += json.loads(cutie.stdout.readline())["times"]
            if args.flops:
                cutie.stdin.write(json.dumps({"frames": frames_file, "threads": threads, "flops": True}) + "\n")
                cutie.stdin.flush()
                gflop_theirs = json.loads(cutie.stdout.readline())["gflop_per_frame"]
        finally:
            cutie.stdin.close()
            cutie.wait(timeout=60)
    ms_ours, ms_theirs = 1000 * float(np.median(ours)), 1000 * float(np.median(theirs))
    result = {
        "preset": args.preset, "height": args.height, "width": args.width, "frames": args.frames,
        "objects": args.objects, "rounds": args.rounds, "timed_frames_each": len(ours), "threads": threads,
        "precision": "bf16 autocast (both)" if args.amp else "fp32 (both)",
        "threads_chosen_by": why, "load_average_per_round": loads,
        "isvos_lite_ms_per_frame": round(ms_ours, 1), "cutie_base_ms_per_frame": round(ms_theirs, 1),
        "ratio": round(ms_ours / ms_theirs, 2),
        "isvos_lite_params": sum(p.numel() for p in model.parameters()), "cutie_base_params": hello["params"],
    }
    if args.flops:
        from isvos_lite.commands.benchmark import PROFILED_MODULES, count_gflop_per_frame
        from isvos_lite.inference import VideoSegmenter

        seg = VideoSegmenter(model, max_internal_size=None, amp=False)    # arithmetic counted in fp32 (same in bf16)
        seg.step(frames[0], first_mask)
        gflop_ours = count_gflop_per_frame(model, seg, list(frames[1:]), PROFILED_MODULES)["total"]
        result.update(isvos_lite_gflop_per_frame=round(gflop_ours, 1), cutie_base_gflop_per_frame=round(gflop_theirs, 1),
                      gflop_ratio=round(gflop_ours / gflop_theirs, 2))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.preset} vs Cutie-base at {args.height}x{args.width}, {args.objects} objects, {len(ours)} timed "
              f"frames each ({args.rounds} alternating rounds), {threads} threads, {result['precision']}, "
              f"load average {loads}:")
        print(f"  isvos-lite {args.preset}: {ms_ours:,.0f} ms per frame (median), "
              f"{result['isvos_lite_params'] / 1e6:.1f} M parameters")
        print(f"  Cutie-base:        {ms_theirs:,.0f} ms per frame (median), {hello['params'] / 1e6:.1f} M parameters")
        print(f"  ratio: {result['ratio']:.2f}x")
        if args.flops:
            print(f"  arithmetic: {result['isvos_lite_gflop_per_frame']:,.1f} vs {result['cutie_base_gflop_per_frame']:,.1f} "
                  f"GFLOP per predicted frame, ratio {result['gflop_ratio']:.2f}x (the time ratio at equal GFLOP/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
