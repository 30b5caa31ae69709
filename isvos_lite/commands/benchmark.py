"""``isvos-lite benchmark``: per-frame inference time and memory of a preset (random weights or a checkpoint).

The protocol follows the field's FPS convention (STCN, XMem, Cutie): all objects of a frame together, I/O excluded,
memory written every 5th frame up to 16 frames, top-k 20 (§4.1). Frames are synthetic (moving textured
blobs, any length: ``--frames 2000`` is a long video) or a real video (``--video FILE`` / ``--frames-dir DIR``
with ``--mask``); each frame is made or decoded before the clock starts. The first ``--warmup`` frames are
not timed.

``--profile`` adds where the time goes: wall time per frame in each top-level module of the network (forward
hooks), the rest being the memory read, soft aggregation and pre/post-processing; ``--markdown`` prints it as the
README's table. ``--flops`` adds how much arithmetic each module does (GFLOP per frame of its convolutions and
matrix products, ``torch.utils.flop_counter``, counted over ``--mem-every`` extra frames after the timed ones so
that memory frames weigh in at their rate) and this machine's **ceiling**: the GFLOP/s of one large, dense 3x3
convolution (64 -> 64 channels at 120x216, channels-last, the best case for oneDNN) at the same thread count.
``total GFLOP / ceiling`` is a lower bound on the time per frame that no rewrite of the same arithmetic beats:
when it is above a target, only a different architecture (or a faster machine) can meet it. Every result names the
machine's load average: on a busy machine times grow (the CPU time per frame, also printed, grows less).

Long videos: ``--rss-at 100,1000,2000`` records, at those frames, the resident memory of the process, the
size of the memory bank (keys + values, all views) and, on CUDA, the allocated GPU memory. Once the FIFO
holds ``--max-memory-frames`` frames (frame 5 x 16 = 80 at the defaults) all three stay flat.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import time

import numpy as np
import torch

from isvos_lite.config import PRESETS, get_preset
from isvos_lite.threads import add_threads_argument, use_threads

# the network's top-level modules, in the order a frame meets them (ISVOS.encode_frame, read, segment, encode_value)
PROFILED_MODULES = ("backbone", "pixel_decoder", "transformer_decoder", "key_encoder", "decoder", "value_encoder")


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


def sequence_video(seq):
    """A generator of (frame uint8 (H, W, 3), given mask or None) pairs over a real video (a ``Sequence``)."""
    for index in range(len(seq)):
        yield seq.read_frame(index), (seq.read_given_mask(index) if index in seq.start_objects else None)


def memory_bank_mb(segmenter) -> float:
    """Bytes held by the segmenter's memory banks (keys and values of every view), in MB."""
    total = 0
    for stream in segmenter.streams:
        for slot in stream.memory.slots:
            total += slot.key.numel() * slot.key.element_size() + slot.value.numel() * slot.value.element_size()
    return total / 2**20


def add_arguments(parser) -> None:
    parser.add_argument("--preset", default="lite", choices=sorted(PRESETS))
    parser.add_argument("--checkpoint", default=None, metavar="CKPT",
                        help="time these weights (their preset) instead of random --preset weights")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--video", default=None, metavar="FILE", help="a real video file instead of synthetic frames")
    source.add_argument("--frames-dir", default=None, metavar="DIR", help="a folder of real frames instead of synthetic ones")
    parser.add_argument("--mask", default=None, metavar="PNG", help="first-frame mask of --video / --frames-dir")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=854)
    parser.add_argument("--frames", type=int, default=30,
                        help="frames to process (incl. warm-up); with a real video at most its length")
    parser.add_argument("--objects", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3, help="untimed frames after the first (default 3)")
    parser.add_argument("--mem-every", type=int, default=5)
    parser.add_argument("--max-memory-frames", type=int, default=16)
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                        help="mixed precision: bf16 autocast on a CPU, fp16 on CUDA. Default: on for CPUs with native "
                             "bf16 (AVX512-BF16 or AMX; same J&F within 0.03 on the teaching splits, convolutions "
                             "1.4-2x faster), off elsewhere; --no-amp forces fp32")
    add_threads_argument(parser)
    parser.add_argument("--profile", action="store_true",
                        help="also time each top-level module of the network (ms per timed frame)")
    parser.add_argument("--flops", action="store_true",
                        help="also count GFLOP per frame in each top-level module and measure this machine's "
                             "dense-convolution ceiling (GFLOP/s): their ratio bounds the time per frame from below")
    parser.add_argument("--markdown", action="store_true", help="with --profile: print the table as markdown")
    parser.add_argument("--rss-at", default="", help="comma-separated frame numbers at which to record the "
                        "resident memory, e.g. 100,1000,2000 (flat once the memory FIFO is full)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    from tqdm.auto import tqdm

    from isvos_lite.inference import VideoSegmenter, precision_name
    from isvos_lite.model.isvos import ISVOS

    for name in ("height", "width", "frames", "objects"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.frames < 2:
        raise ValueError("--frames must be >= 2 (the first frame is given, not predicted)")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA device is available; use --device cpu")
    threads_note = use_threads(args.threads)
    rss_at = sorted({int(v) for v in args.rss_at.split(",") if v.strip()})

    if (args.video or args.frames_dir) and not args.mask:
        raise ValueError("--video / --frames-dir need --mask (the first frame's palette PNG)")
    if args.mask and not (args.video or args.frames_dir):
        raise ValueError("--mask is only used with --video or --frames-dir")

    if args.checkpoint:
        from isvos_lite.checkpoint import load_checkpoint
        model = load_checkpoint(args.checkpoint, map_location=args.device)
    else:
        torch.manual_seed(0)
        model = ISVOS(get_preset(args.preset)).eval()
    preset = model.cfg.name
    params = sum(p.numel() for p in model.parameters())
    seg = VideoSegmenter(model, mem_every=args.mem_every, max_memory_frames=args.max_memory_frames, top_k=args.top_k,
                         device=args.device, amp=args.amp, max_internal_size=None)
    if args.video or args.frames_dir:
        from isvos_lite.data.sequences import folder_sequence, video_sequence
        seq = video_sequence(args.video, args.mask) if args.video else folder_sequence(args.frames_dir, args.mask)
        if 0 not in seq.start_objects:
            raise ValueError(f"--mask must be the mask of the first frame of {seq.name}")
        num_frames = min(args.frames, len(seq))
        if num_frames < 2:
            raise ValueError(f"{seq.name} has {len(seq)} frame(s); timing needs at least 2")
        height, width = seq.size
        objects = len(seq.object_ids)
        video, source = sequence_video(seq), str(args.video or args.frames_dir)
    else:
        num_frames, height, width, objects = args.frames, args.height, args.width, args.objects
        synthetic = synthetic_video(height, width, objects)       # yields the true mask of every frame
        video = ((frame, mask if t == 0 else None) for t, (frame, mask) in enumerate(synthetic))   # give frame 0's
        source = "synthetic"
    warm = min(args.warmup, num_frames - 2)
    profile = ModuleTimer(model, PROFILED_MODULES) if args.profile else None
    times, cpu_times, rss_log, bank_log, cuda_log = [], [], {}, {}, {}
    cuda = args.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for t in tqdm(range(num_frames), desc=f"benchmark {preset}", unit="frame", disable=args.json):
        frame, mask = next(video)                     # made / decoded before the clock starts: I/O excluded
        if profile is not None:
            profile.active = t > warm
        sync()
        start, start_cpu = time.perf_counter(), time.process_time()
        seg.step(frame, mask)
        sync()
        if t > warm:
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - start_cpu)
        if t + 1 in rss_at:
            rss_log[str(t + 1)] = round(current_rss_mb(), 1)
            bank_log[str(t + 1)] = round(memory_bank_mb(seg), 2)
            if cuda:
                cuda_log[str(t + 1)] = round(torch.cuda.memory_allocated() / 2**20, 1)
    ms = 1000 * float(np.mean(times))
    result = {
        "preset": preset, "device": args.device, "source": source, "height": height, "width": width,
        "frames": num_frames, "objects": objects, "timed_frames": len(times),
        "ms_per_frame": round(ms, 2), "fps": round(1000 / ms, 2), "ms_per_frame_median": round(1000 * float(np.median(times)), 2),
        "memory_frames": len(seg.streams[0].memory.slots), "peak_rss_mb": round(peak_rss_mb(), 1),
        "rss_mb_at_frame": rss_log, "memory_bank_mb_at_frame": bank_log, "params": params,
        "threads": torch.get_num_threads(), "threads_chosen_by": threads_note,
        "precision": precision_name(seg.amp, seg.device),
        "cpu_ms_per_frame": round(1000 * float(np.mean(cpu_times)), 2), "load_average": load_average(),
    }
    if profile is not None:
        result["profile_ms_per_frame"] = profile.table(len(times), ms)
    if args.flops:
        extra = [next(video)[0] for _ in range(max(1, args.mem_every))]   # made before counting, like the timed ones
        gflop = count_gflop_per_frame(model, seg, extra, PROFILED_MODULES)
        ceiling = conv_ceiling_gflops(device=args.device, amp=seg.amp)
        result["gflop_per_frame"] = gflop
        result["conv_ceiling_gflops"] = round(ceiling, 1)
        result["lower_bound_ms_per_frame"] = round(1000 * gflop["total"] / ceiling, 1)
        result["achieved_gflops"] = round(gflop["total"] / (ms / 1000), 1)
    if cuda:
        result["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        result["cuda_mb_at_frame"] = cuda_log
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{preset}: {result['ms_per_frame']} ms/frame ({result['fps']} fps) at {height}x{width}, "
              f"{objects} objects, {source} video, {result['memory_frames']} memory frames at the end, peak RSS "
              f"{result['peak_rss_mb']} MB, {params / 1e6:.1f} M parameters, {result['threads']} threads, "
              f"{result['precision']}")
        if rss_log:
            print("resident memory (MB) at frame: " + ", ".join(f"{k}: {v}" for k, v in rss_log.items()))
            print("memory bank (MB) at frame:     " + ", ".join(f"{k}: {v}" for k, v in bank_log.items()))
        if cuda_log:
            print("CUDA allocated (MB) at frame:  " + ", ".join(f"{k}: {v}" for k, v in cuda_log.items()))
        print(f"{threads_note}; load average {result['load_average']}; CPU time {result['cpu_ms_per_frame']} ms/frame")
        gflop = result.get("gflop_per_frame", {})
        if profile is not None:
            rows = result["profile_ms_per_frame"]
            if args.markdown:
                if gflop:
                    print("| part | ms per frame | share | GFLOP per frame | GFLOP/s |\n|---|---|---|---|---|")
                else:
                    print("| part | ms per frame | share |\n|---|---|---|")
                for name, value in rows.items():
                    cells = f"| {name} | {value:,.1f} | {100 * value / ms:.0f} % |"
                    if gflop:
                        g = gflop.get(name)
                        cells += (f" {g:.2f} | {g / (value / 1000):.1f} |" if g is not None and value > 0 else " – | – |")
                    print(cells)
            else:
                for name, value in rows.items():
                    line = f"  {name:<38} {value:10.1f} ms  {100 * value / ms:5.1f} %"
                    g = gflop.get(name)
                    if g is not None and value > 0:
                        line += f"  {g:7.2f} GFLOP  {g / (value / 1000):6.1f} GFLOP/s"
                    print(line)
        elif gflop:
            for name, value in gflop.items():
                print(f"  {name:<38} {value:7.2f} GFLOP per frame")
        if gflop:
            print(f"{gflop['total']:.2f} GFLOP per frame at {result['achieved_gflops']} GFLOP/s; this machine's dense-conv "
                  f"ceiling at {result['threads']} threads: {result['conv_ceiling_gflops']} GFLOP/s, so no rewrite of this "
                  f"arithmetic runs faster than {result['lower_bound_ms_per_frame']} ms per frame here")
    return 0


def count_gflop_per_frame(model, segmenter, frames, names) -> dict[str, float]:
    """GFLOP per frame (convolutions and matrix products, ``torch.utils.flop_counter``) of ``segmenter.step`` over
    ``frames`` (predicted frames of the running video), split by the top-level modules ``names``; the rest of the
    network's arithmetic (memory read, aggregation) is "memory read, aggregation, pre/post"."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False, depth=1)

    def global_count() -> int:
        return sum(counter.flop_counts["Global"].values())

    totals = {name: 0 for name in names}
    started: dict[str, int] = {}
    handles = []
    for name in names:
        module = getattr(model, name)
        handles.append(module.register_forward_pre_hook(lambda _m, _i, name=name: started.__setitem__(name, global_count())))
        handles.append(module.register_forward_hook(
            lambda _m, _i, _o, name=name: totals.__setitem__(name, totals[name] + global_count() - started[name])))
    # the module tracker of FlopCounterMode hooks autograd on tensors that require grad, which inference mode forbids
    requires_grad = {p: p.requires_grad for p in model.parameters()}
    # counted in fp32: the arithmetic is the same in every precision, and FlopCounterMode under autocast trips over
    # einsums whose operands autocast would only cast further down (torch 2.13)
    amp, segmenter.amp = segmenter.amp, False
    try:
        for p in requires_grad:
            p.requires_grad_(False)
        with counter:
            for frame in frames:
                segmenter.step(frame, None)
    finally:
        segmenter.amp = amp
        for p, flag in requires_grad.items():
            p.requires_grad_(flag)
        for handle in handles:
            handle.remove()
    n = len(frames)
    everything = global_count()
    rows = {name: round(total / n / 1e9, 6) for name, total in totals.items()}
    rows["memory read, aggregation, pre/post"] = round((everything - sum(totals.values())) / n / 1e9, 6)
    rows["total"] = round(everything / n / 1e9, 6)
    return rows


def conv_ceiling_gflops(device: str = "cpu", repeats: int = 5, amp: bool = False) -> float:
    """GFLOP/s of one large dense 3x3 convolution (64 -> 64 channels, 120x216, channels-last on CPU) at the current
    thread count: the best this machine does on the kind of work the network is made of (median of ``repeats``);
    with ``amp`` under the same autocast as the benchmark (bf16 on a CPU, fp16 on CUDA)."""
    x = torch.randn(1, 64, 120, 216, device=device)
    conv = torch.nn.Conv2d(64, 64, 3, padding=1, bias=False).to(device).eval()
    if not device.startswith("cuda"):
        x, conv = x.contiguous(memory_format=torch.channels_last), conv.to(memory_format=torch.channels_last)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    flop = 2 * 64 * 64 * 9 * 120 * 216
    times = []
    from isvos_lite.inference import amp_dtype

    autocast = torch.autocast(torch.device(device).type, dtype=amp_dtype(device)) if amp else contextlib.nullcontext()
    with torch.inference_mode(), autocast:
        conv(x)                                   # warm-up (oneDNN picks its kernel)
        for _ in range(repeats):
            sync()
            start = time.perf_counter()
            conv(x)
            sync()
            times.append(time.perf_counter() - start)
    return flop / float(np.median(times)) / 1e9


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


class ModuleTimer:
    """Wall time spent inside chosen submodules of a model (forward pre/post hooks), summed while ``active``."""

    def __init__(self, model, names):
        self.totals = {name: 0.0 for name in names}
        self.active = False
        self._start = {}
        cuda = next(model.parameters()).is_cuda
        sync = torch.cuda.synchronize if cuda else (lambda: None)
        for name in names:
            module = getattr(model, name)

            def before(_module, _inputs, name=name):
                sync()
                self._start[name] = time.perf_counter()

            def after(_module, _inputs, _output, name=name):
                sync()
                if self.active:
                    self.totals[name] += time.perf_counter() - self._start[name]

            module.register_forward_pre_hook(before)
            module.register_forward_hook(after)

    def table(self, frames: int, ms_per_frame: float) -> dict[str, float]:
        """{module: ms per frame, ..., the rest, total}; the rest is memory reading, aggregation, padding etc."""
        rows = {name: round(1000 * total / frames, 1) for name, total in self.totals.items()}
        rows["memory read, aggregation, pre/post"] = round(ms_per_frame - sum(rows.values()), 1)
        rows["total"] = round(ms_per_frame, 1)
        return rows
