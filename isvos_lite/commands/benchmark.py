"""``isvos-lite benchmark``: per-frame inference time and peak memory of a preset (random weights).

The protocol follows the field's FPS convention (peers §7): all objects of a frame together, I/O excluded,
memory written every 5th frame up to 16 frames, top-k 20. Frames are synthetic (moving textured blobs),
made before the clock starts. The first ``--warmup`` frames are not timed.
"""

from __future__ import annotations

import json
import os
import resource
import time

import numpy as np
import torch

from isvos_lite.config import PRESETS, get_preset


def current_rss_mb() -> float:
    """Resident memory of this process now (Linux /proc; falls back to the peak)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return peak_rss_mb()


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def synthetic_video(height: int, width: int, objects: int, seed: int = 0):
    """A generator of (frame uint8 (H, W, 3), first mask) pairs: textured background, drifting discs."""
    rng = np.random.default_rng(seed)
    bg = (rng.random((height // 8 + 1, width // 8 + 1, 3)) * 255).astype(np.uint8)
    bg = np.kron(bg, np.ones((8, 8, 1), np.uint8))[:height, :width]
    yy, xx = np.mgrid[:height, :width]
    centres = rng.random((objects, 2)) * [height, width]
    speeds = rng.normal(0, 3, (objects, 2))
    colours = rng.integers(0, 255, (objects, 3))
    radius = max(4, min(height, width) // 8)
    t = 0
    while True:
        frame = bg.copy()
        mask = np.zeros((height, width), np.uint8)
        for o in range(objects):
            cy, cx = (centres[o] + speeds[o] * t) % [height, width]
            disc = (yy - cy) ** 2 + (xx - cx) ** 2 < radius ** 2
            frame[disc] = colours[o]
            mask[disc] = o + 1
        yield frame, mask
        t += 1


def add_arguments(parser) -> None:
    parser.add_argument("--preset", default="lite", choices=sorted(PRESETS))
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=854)
    parser.add_argument("--frames", type=int, default=30, help="frames to process (incl. warm-up)")
    parser.add_argument("--objects", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3, help="untimed frames after the first (default 3)")
    parser.add_argument("--mem-every", type=int, default=5)
    parser.add_argument("--max-memory-frames", type=int, default=16)
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", action="store_true", help="mixed precision (fp16 on CUDA, bf16 on CPU)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--rss-at", default="", help="comma-separated frame numbers at which to record the "
                        "resident memory, e.g. 100,1000,2000 (flat once the memory FIFO is full)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    from tqdm.auto import tqdm

    from isvos_lite.inference import VideoSegmenter
    from isvos_lite.model.isvos import ISVOS

    for name in ("height", "width", "frames", "objects"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.frames < 2:
        raise ValueError("--frames must be >= 2 (the first frame is given, not predicted)")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA device is available; use --device cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    rss_at = sorted({int(v) for v in args.rss_at.split(",") if v.strip()})

    torch.manual_seed(0)
    model = ISVOS(get_preset(args.preset)).eval()
    params = sum(p.numel() for p in model.parameters())
    seg = VideoSegmenter(model, mem_every=args.mem_every, max_memory_frames=args.max_memory_frames, top_k=args.top_k,
                         device=args.device, amp=args.amp, max_internal_size=None)
    video = synthetic_video(args.height, args.width, args.objects)
    warm = min(args.warmup, args.frames - 2)
    times, rss_log = [], {}
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    for t in tqdm(range(args.frames), desc=f"benchmark {args.preset}", unit="frame", disable=args.json):
        frame, mask = next(video)                     # made before the clock starts: I/O excluded
        sync()
        start = time.perf_counter()
        seg.step(frame, mask if t == 0 else None)
        sync()
        if t > warm:
            times.append(time.perf_counter() - start)
        if t + 1 in rss_at:
            rss_log[str(t + 1)] = round(current_rss_mb(), 1)
    ms = 1000 * float(np.mean(times))
    result = {
        "preset": args.preset, "device": args.device, "height": args.height, "width": args.width,
        "frames": args.frames, "objects": args.objects, "timed_frames": len(times),
        "ms_per_frame": round(ms, 2), "fps": round(1000 / ms, 2), "ms_per_frame_median": round(1000 * float(np.median(times)), 2),
        "memory_frames": len(seg.streams[0].memory.slots), "peak_rss_mb": round(peak_rss_mb(), 1),
        "rss_mb_at_frame": rss_log, "params": params, "threads": torch.get_num_threads(),
    }
    if args.device.startswith("cuda"):
        result["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.preset}: {result['ms_per_frame']} ms/frame ({result['fps']} fps) at {args.height}x{args.width}, "
              f"{args.objects} objects, {result['memory_frames']} memory frames at the end, peak RSS "
              f"{result['peak_rss_mb']} MB, {params / 1e6:.1f} M parameters, {result['threads']} threads")
        if rss_log:
            print("resident memory (MB) at frame: " + ", ".join(f"{k}: {v}" for k, v in rss_log.items()))
    return 0
