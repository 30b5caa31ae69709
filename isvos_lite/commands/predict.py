"""``isvos-lite predict --checkpoint CKPT (--frames DIR | --video FILE) --mask FIRST.png --out DIR [--overlay OUT.mp4]``

Your own video, one mask, masks out: the frames (a folder of images sorted by the number in
their names, or a video file decoded with OpenCV) are segmented with the paper's inference protocol (§4.1) from
the first frame's mask, a palette PNG whose pixel values are object ids. ``--mask`` may also be a folder of masks
named like their frames, for objects that first appear later. Writes one palette PNG per frame,
``DIR/<frame name>.png``, with the mask's own ids, and optionally an overlay video (mp4, read back with OpenCV
to check it). ``DIR`` is written as a whole or not at all.

What the user owns is never touched: an ``--out`` that is, holds or lies inside ``--frames``, ``--video`` or
``--mask`` is refused; ``--overwrite`` replaces only the masks an earlier ``predict`` wrote there (its manifest,
``isvos_lite.outputs``), keeps every other file, and refuses a folder that isvos-lite did not write; one run at a
time writes a folder (``isvos_lite.outputs.output_lock``).

Without a mask: ``--click X,Y`` (repeatable) picks, for each click, the instance branch's best-scored object proposal
containing that pixel of the first frame (``isvos-lite propose`` shows them; :mod:`isvos_lite.proposals`), and the
picked proposals are the first mask (click i = object id i). ``--mask`` stays the precise way.

The segmenter options (``--mem-every``, ``--max-memory-frames``, ``--top-k``, ``--flip``, ``--scales``,
``--max-internal-size``, ``--device``, ``--amp``) are shared with ``isvos-lite eval``.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import torch

from isvos_lite.threads import add_threads_argument, use_threads

# ---------------------------------------------------------------------------------------------- shared options
def add_segmenter_arguments(parser) -> None:
    """The inference-protocol options of ``predict`` and ``eval`` (paper §4.1 defaults)."""
    group = parser.add_argument_group("inference protocol (paper §4.1 defaults)")
    group.add_argument("--mem-every", type=int, default=5, help="write a memory frame every N frames (default 5)")
    group.add_argument("--max-memory-frames", type=int, default=16,
                       help="FIFO memory size in frames, first frame always kept (default 16)")
    group.add_argument("--top-k", type=int, default=20,
                       help="memory matches kept per query pixel (default 20; 0 = full softmax)")
    group.add_argument("--flip", action="store_true",
                       help="average with the horizontally flipped video (Table 5's 'vertical mirroring')")
    group.add_argument("--scales", type=float, nargs="+", default=[1.0], metavar="S",
                       help="test-time scales to average, e.g. --scales 1.0 1.25 (Table 5; default 1.0)")
    group.add_argument("--tta", choices=("independent", "online"), default="independent",
                       help="how --flip / --scales views are merged: 'independent' (default; XMem's protocol, each "
                            "view its own pass, probabilities averaged afterwards) or 'online' (every view's memory "
                            "written from the averaged prediction)")
    group.add_argument("--max-internal-size", type=int, default=480,
                       help="frames with a larger short side are processed at this size and the masks resized "
                            "back (default 480; 0 = always full size)")
    group.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                       help="cpu or cuda (default: cuda when available)")
    group.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                        help="mixed precision: bf16 autocast on a CPU, fp16 on CUDA. Default: on for CPUs with native "
                             "bf16 (AVX512-BF16 or AMX; same J&F within 0.03 on the teaching splits, convolutions "
                             "1.4-2x faster), off elsewhere; --no-amp forces fp32")
    add_threads_argument(group)


def segmenter_options(args) -> dict:
    """Keyword arguments for :class:`isvos_lite.inference.VideoSegmenter` from the parsed options."""
    from isvos_lite.inference import default_amp

    if args.top_k < 0:
        raise ValueError(f"--top-k must be >= 0 (0 = full softmax), got {args.top_k}")
    if args.max_internal_size < 0:
        raise ValueError(f"--max-internal-size must be >= 0 (0 = full size), got {args.max_internal_size}")
    _check_device(args.device)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA device is available; use --device cpu")
    options = {
        "mem_every": args.mem_every, "max_memory_frames": args.max_memory_frames,
        "top_k": args.top_k or None, "flip": args.flip, "scales": tuple(args.scales),
        "max_internal_size": args.max_internal_size or None, "device": args.device,
        # resolved here, so that run records say which precision ran (None = this machine's default)
        "amp": default_amp(args.device) if args.amp is None else args.amp,
    }
    if args.flip or len(args.scales) > 1:         # the merge only matters with several views
        options["tta"] = args.tta
    return options


def _check_device(device: str) -> None:
    """A clear error for a device name torch does not know (``gpu``) or this command does not use (``mps``)."""
    try:
        kind = torch.device(device).type
    except RuntimeError:
        kind = None
    if kind not in ("cpu", "cuda"):
        raise ValueError(f"--device {device} is not a device this command runs on; use cpu, or cuda (cuda:N for the "
                         f"N-th GPU)")


def check_frame_sizes(seq) -> None:
    """Every frame of a frames folder has the first frame's size (read from the file headers, before any work)."""
    from PIL import Image

    from isvos_lite.data.sequences import VideoFileSequence

    if isinstance(seq, VideoFileSequence):
        return                                          # a video file has one frame size
    height, width = seq.size
    for path in seq.frame_paths[1:]:
        with Image.open(path) as image:
            w, h = image.size
        if (h, w) != (height, width):
            raise ValueError(f"frame {path} is {w}x{h} but the video's first frame is {width}x{height}; all frames of "
                             f"a video must have one size (resize or re-export {path.name})")


def internal_size_note(size: tuple[int, int], max_internal_size: int | None) -> str | None:
    """The warning for frames larger than the internal size (4K video: XMem #30), or None."""
    height, width = size
    if max_internal_size is None or min(height, width) <= max_internal_size:
        return None
    scale = max_internal_size / min(height, width)
    return (f"warning: frames are {width}x{height}; processing at {round(width * scale)}x{round(height * scale)} "
            f"(short side {max_internal_size}, --max-internal-size) and resizing the masks back to {width}x{height}")


# ---------------------------------------------------------------------------------------------- predict
def add_arguments(parser) -> None:
    from isvos_lite.commands.propose import add_proposal_arguments
    from isvos_lite.proposals import parse_click

    parser.add_argument("--checkpoint", required=True, metavar="CKPT",
                        help="weights (.safetensors with its .json), e.g. checkpoints/lite.safetensors")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--frames", metavar="DIR", help="folder of frames (jpg/png/...), ordered by the number in the name")
    source.add_argument("--video", metavar="FILE", help="video file (mp4/avi/mov) decoded with OpenCV")
    first = parser.add_mutually_exclusive_group(required=True)
    first.add_argument("--mask", metavar="PNG",
                       help="first-frame mask: palette PNG, pixel value = object id (0 = background); or a folder "
                            "of masks named like their frames for objects that appear later")
    first.add_argument("--click", action="append", type=parse_click, metavar="X,Y",
                       help="instead of --mask: a pixel of an object in the first frame (x from the left, y from the "
                            "top); it picks the instance branch's best proposal containing it (isvos-lite propose "
                            "shows them). Repeat for more objects: click i is object id i")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the masks, DIR/<frame>.png")
    parser.add_argument("--overlay", metavar="OUT.mp4", default=None, help="also write an overlay video")
    parser.add_argument("--fps", type=float, default=None,
                        help="overlay frame rate (default: the video's, or 24 for a frames folder)")
    parser.add_argument("--overlay-style", choices=("outline", "fill"), default="outline",
                        help="overlay: each object's outline, its pixels left visible (default), or its colour "
                             "blended over it")
    parser.add_argument("--overlay-colors", choices=("contrast", "davis"), default="contrast",
                        help="overlay colours: a colour-blind-safe palette that stands out from red and green scenes "
                             "(default, object 1 blue), or the DAVIS palette of the mask PNGs (object 1 dark red)")
    parser.add_argument("--objects", type=int, nargs="+", default=None, metavar="ID",
                        help="track only these object ids of the mask (default: all)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out folder / --overlay file")
    add_proposal_arguments(parser.add_argument_group("--click: the proposals a click chooses among"), "--proposals")
    add_segmenter_arguments(parser)


def run(args) -> int:
    from isvos_lite.checkpoint import load_checkpoint
    from isvos_lite.data.sequences import folder_sequence, video_sequence
    from isvos_lite.eval.runner import segment_to_folder, tracked_starts
    from isvos_lite.viz.video_io import OverlayVideoWriter
    from isvos_lite.inference import precision_note
    from isvos_lite.outputs import check_apart, output_lock

    options = segmenter_options(args)
    print(use_threads(args.threads))
    print(precision_note(args.amp, args.device))
    out = Path(args.out)
    overlay_path = Path(args.overlay) if args.overlay else None
    check_apart(out, "--out", {"--frames": args.frames, "--video": args.video, "--mask": args.mask})
    if overlay_path is not None:
        check_apart(overlay_path, "--overlay", {"--frames": args.frames, "--video": args.video, "--mask": args.mask})
    _check_outputs(out, overlay_path, args.overwrite)

    # read and check the inputs before loading the model or creating anything
    mask, model = args.mask, None
    if args.click:        # the first-frame mask from the instance branch's proposals under the clicks
        from isvos_lite.commands.propose import click_mask_file
        mask, model, _click_dir = click_mask_file(args, options["device"])
    seq = video_sequence(args.video, mask) if args.video else folder_sequence(args.frames, mask)
    starts = tracked_starts(seq, args.objects)
    check_frame_sizes(seq)
    ids = sorted(i for group in starts.values() for i in group)
    if len(seq) == 1:
        print("warning: the video has a single frame: there is nothing to propagate, the output is the given mask")
    note = internal_size_note(seq.size, options["max_internal_size"])
    if note:
        print(note)
    if model is None:
        model = load_checkpoint(args.checkpoint, map_location=options["device"])

    fps = args.fps or (seq.fps if args.video else 24.0)
    overlay = (OverlayVideoWriter(overlay_path, fps=fps, style=args.overlay_style, palette=args.overlay_colors)
               if overlay_path else None)
    on_frame = (lambda index, frame, mask: overlay.write(frame, mask)) if overlay else None
    start = time.perf_counter()
    with output_lock(out, "predict"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="frames are .*max_internal_size")   # said once above
        try:
            segment_to_folder(model, seq, out, overwrite=args.overwrite, keep_masks=False, on_frame=on_frame,
                              objects=args.objects, **options)
        except BaseException:
            if overlay:
                overlay.abort()
            raise
    seconds = time.perf_counter() - start
    print(f"segmented {len(seq)} frames of {seq.size[1]}x{seq.size[0]} ({len(ids)} object(s), ids {ids}) in "
          f"{seconds:.1f} s ({len(seq) / seconds:.2f} fps)")
    print(f"wrote {len(seq.output_indices)} masks to {out}/")
    if overlay:
        overlay.close()
        codec = ("H.264, plays in browsers" if overlay.codec == "h264" else
                 "MPEG-4 part 2: desktop players only; `pip install imageio-ffmpeg` for H.264")
        print(f"wrote overlay video {overlay_path} ({overlay.frames_written} frames at {fps:g} fps, {codec}; "
              f"read back with OpenCV)")
    return 0


def _check_outputs(out: Path, overlay: Path | None, overwrite: bool) -> None:
    """Fail before any work when an output would clobber something."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} exists and is a file; pass a folder for the masks")
    if out.is_dir() and any(out.iterdir()):
        from isvos_lite.outputs import Manifest

        if Manifest.read(out) is None:
            raise ValueError(f"--out {out} holds files not written by isvos-lite predict; nothing there is replaced or "
                             f"deleted: choose an empty or new folder")
        if not overwrite:
            raise ValueError(f"--out {out} holds the masks of an earlier run; choose a new folder or pass --overwrite "
                             f"to replace them (files you added there are kept)")
    if overlay is not None:
        if overlay.suffix.lower() not in (".mp4", ".m4v", ".mov"):
            raise ValueError(f"--overlay {overlay} must end in .mp4, .m4v or .mov (it is an H.264 mp4 file)")
        if overlay.exists() and not overwrite:
            raise ValueError(f"--overlay {overlay} exists; choose another name or pass --overwrite to replace it")
        if out.resolve() in overlay.resolve().parents:
            raise ValueError(f"--overlay {overlay} is inside --out {out}; put it next to the masks folder instead")
