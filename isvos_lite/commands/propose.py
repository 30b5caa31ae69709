"""``isvos-lite propose --checkpoint CKPT --frame IMG --out proposals.png [--top-k K] [--figure fig.png]``

The instance branch's object proposals on one frame (:mod:`isvos_lite.proposals`): every object query's mask,
ranked by the class-agnostic score of ``isvos-lite instance-ap``, duplicates removed, the ``K`` best kept. Writes a
palette PNG whose pixel value is the proposal's rank (1 = best; where proposals overlap, the better one), optionally
a figure with the numbered proposals, and prints one line per proposal with a point inside it. Then
``isvos-lite predict --click X,Y ...`` tracks the proposals under the clicks (or ``--mask proposals.png
--objects R`` tracks proposal ``R`` by its number). ``IMG`` is an image, a folder of frames or a video file (its
first frame). Any checkpoint works, also an instance-stage one (only the backbone and the IS branch run).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from isvos_lite.threads import add_threads_argument, use_threads

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm")


def add_proposal_arguments(parser, top_k_flag: str = "--top-k") -> None:
    """The proposal options shared by ``propose`` and ``predict --click``."""
    from isvos_lite.proposals import DEFAULT_TOP_K

    parser.add_argument(top_k_flag, type=int, default=DEFAULT_TOP_K, metavar="K", dest="proposal_top_k",
                        help=f"how many ranked proposals to keep (default {DEFAULT_TOP_K}; 0 = all)")
    parser.add_argument("--proposal-size", type=int, default=480, metavar="N",
                        help="frames with a larger short side are proposed at this size and the masks resized back "
                             "(default 480; 0 = always full size)")


def add_arguments(parser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="CKPT",
                        help="weights (.safetensors with its .json): checkpoints/lite.safetensors, an instance-stage "
                             "model.safetensors, ...")
    parser.add_argument("--frame", required=True, metavar="IMG",
                        help="the frame: an image file, a folder of frames (its first) or a video file (its first frame)")
    parser.add_argument("--out", required=True, metavar="PNG", help="palette PNG of the proposals (pixel = rank)")
    parser.add_argument("--figure", metavar="FIG", default=None, help="also draw the numbered proposals (png/pdf/svg)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing --out / --figure files")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    add_proposal_arguments(parser)
    add_threads_argument(parser)


def read_first_frame(path: str | Path, what: str = "--frame") -> np.ndarray:
    """(H, W, 3) uint8 RGB: the image, the first frame of a folder (numeric order) or of a video file."""
    from isvos_lite.data.palette import read_frame
    from isvos_lite.data.sequences import list_frames

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} {path} does not exist; give an image, a folder of frames or a video file")
    if path.is_dir():
        return read_frame(list_frames(path)[0])
    if path.suffix.lower() in VIDEO_SUFFIXES:
        import cv2
        capture = cv2.VideoCapture(str(path))
        ok, bgr = capture.read() if capture.isOpened() else (False, None)
        capture.release()
        if not ok:
            raise ValueError(f"{what} {path}: the first frame cannot be decoded by OpenCV; re-encode the video "
                             f"(e.g. `ffmpeg -i in.xxx -c:v libx264 out.mp4`) or extract frames to a folder")
        return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return read_frame(path)


def proposal_options(args) -> dict:
    """Keyword arguments of :func:`isvos_lite.proposals.propose` from the parsed options."""
    if args.proposal_top_k < 0:
        raise ValueError(f"the number of proposals must be >= 0 (0 = all), got {args.proposal_top_k}")
    if args.proposal_size < 0 or 0 < args.proposal_size < 32:
        raise ValueError(f"--proposal-size must be 0 (full size) or >= 32, got {args.proposal_size}")
    return {"top_k": args.proposal_top_k or None, "max_size": args.proposal_size or None}


def clicked_first_mask(model, frame: np.ndarray, clicks, **options):
    """(first-frame id mask (H, W) uint8, picks, proposals): click ``i`` picks object ``i`` among the proposals."""
    from isvos_lite.proposals import pick_by_clicks, propose

    proposals = propose(model, frame, **options)
    picks = pick_by_clicks(proposals, clicks)
    return picks.to_mask(), picks, proposals


def run(args) -> int:
    from isvos_lite.checkpoint import load_checkpoint
    from isvos_lite.proposals import propose, write_proposals

    options = proposal_options(args)
    out = Path(args.out)
    figure_path = Path(args.figure) if args.figure else None
    if out.suffix.lower() != ".png":
        raise ValueError(f"--out {out} must end in .png (a palette PNG of proposal numbers)")
    for path, flag in ((out, "--out"), (figure_path, "--figure")):
        if path is not None and path.exists() and not args.overwrite:
            raise ValueError(f"{flag} {path} exists; choose another name or pass --overwrite to replace it")
    if figure_path is not None and figure_path.suffix.lower() not in (".png", ".pdf", ".svg", ".jpg", ".jpeg"):
        raise ValueError(f"--figure {figure_path} must end in .png, .pdf, .svg or .jpg")
    print(use_threads(args.threads))
    frame = read_first_frame(args.frame)
    model = load_checkpoint(args.checkpoint, map_location=args.device)
    proposals = propose(model, frame, **options)
    print(proposals.describe())
    out.parent.mkdir(parents=True, exist_ok=True)
    write_proposals(out, proposals)
    print(f"wrote {out} (palette PNG, pixel value = proposal number; better-ranked proposals on top)")
    if figure_path is not None:
        from isvos_lite.viz.figures import save_figure
        from isvos_lite.viz.proposals import plot_proposals

        figure_path.parent.mkdir(parents=True, exist_ok=True)
        save_figure(plot_proposals(frame, proposals, title=f"proposals of {Path(args.frame).name}"), figure_path)
        print(f"wrote {figure_path}")
    if len(proposals):
        x, y = proposals[0].inside_point
        print(f"next: isvos-lite predict --checkpoint {args.checkpoint} --frames/--video ... --click {x},{y} --out DIR "
              f"(one --click per object)")
    return 0


def click_mask_file(args, device: str):
    """``predict --click``: the first-frame mask picked by the clicks, written to a temporary palette PNG.

    Returns ``(mask path, model, holder)``: keep ``holder`` (the temporary folder) alive while the path is read."""
    import tempfile

    from isvos_lite.checkpoint import load_checkpoint
    from isvos_lite.data.palette import write_mask

    if args.objects is not None:
        raise ValueError("--objects chooses ids of a --mask; with --click every click is one object (ids 1, 2, ... "
                         "in click order): leave --objects out")
    options = proposal_options(args)
    source = args.video or args.frames
    frame = read_first_frame(source, "--video" if args.video else "--frames")
    model = load_checkpoint(args.checkpoint, map_location=device)
    mask, picks, proposals = clicked_first_mask(model, frame, args.click, **options)
    print(picks.describe())
    holder = tempfile.TemporaryDirectory(prefix="isvos-lite-clicks-")
    path = write_mask(Path(holder.name) / "first_mask.png", mask)
    return path, model, holder
