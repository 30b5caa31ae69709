"""``isvos-lite demo``: the README's main job (``make demo``), about a minute on a 2-core CPU.

1. makes sure the teaching world exists (``data/toy``; generated in ~30 s the first time);
2. loads the shipped ``lite`` checkpoint (``checkpoints/lite.safetensors``); without it, random weights with
   a loud warning (the masks are then meaningless, but every step still runs);
3. segments two validation videos and one ``lookalike`` video (paper Fig. 1) with the paper's
   inference protocol (§4.1: memory every 5th frame, FIFO of 16, top-k 20);
4. writes, under ``outputs/demo/``: the palette PNGs (``masks/<sequence>/<frame>.png``), one overlay video
   per sequence (``<sequence>.mp4``), a summary figure (``summary.png``) and the J&F CSVs;
5. scores the three videos with the official DAVIS protocol and prints J&F per sequence.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from isvos_lite.threads import add_threads_argument, use_threads

DEFAULT_OUT = Path("outputs/demo")
FRAMES_IN_FIGURE = 5
VIDEO_FPS = 4           # the teaching videos are 20-30 frames: 5-8 s each, long enough for a room to watch


def add_arguments(parser) -> None:
    parser.add_argument("--out", default=str(DEFAULT_OUT), metavar="DIR", help=f"output folder (default: {DEFAULT_OUT})")
    parser.add_argument("--checkpoint", default=None, metavar="CKPT",
                        help="weights to use (default: the shipped checkpoints/lite.safetensors)")
    parser.add_argument("--world", default=None, metavar="ROOT",
                        help="teaching-world folder (default: data/toy, generated if missing)")
    parser.add_argument("--sequences", nargs="+", default=None, metavar="SEQ",
                        help="videos to segment (default: the two shortest val videos and the shortest lookalike video)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                        help="mixed precision: bf16 autocast on a CPU, fp16 on CUDA. Default: on for CPUs with native "
                             "bf16, off elsewhere; --no-amp forces fp32 (as in predict and eval)")
    add_threads_argument(parser)


def run(args) -> int:
    import torch

    from isvos_lite.data import teaching
    from isvos_lite.data.sequences import davis_sequences
    from isvos_lite.inference import precision_note

    start = time.perf_counter()
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} exists and is a file; pass a folder")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA device is available; use --device cpu")
    print(use_threads(args.threads))
    amp = getattr(args, "amp", None)
    print(precision_note(amp, args.device))
    world = Path(args.world) if args.world else teaching.ensure_teaching_world()
    names = args.sequences or _default_sequences(world)
    sequences = davis_sequences(world, names=names)
    model, weights = _load_model(args.checkpoint, args.device)
    print(f"demo: {len(sequences)} videos of the teaching world {world}, model {weights}")

    masks_dir = out / "masks"
    predictions = _segment(model, sequences, masks_dir, args.device, amp)
    result = _score(world, masks_dir, out, names)
    scores = {seq.name: _frame_scores(seq, predictions[seq.name]) for seq in sequences}
    _videos(sequences, predictions, scores, out)
    figure_path = _summary_figure(sequences, predictions, scores, result, out / "summary.png")

    print()
    print(_table(sequences, result, world))
    print()
    lookalikes = _split_names(world, "lookalike")
    for seq in sequences:
        print(_why(seq, predictions[seq.name], scores[seq.name], lookalike=seq.name in lookalikes))
    print()
    print(f"masks:    {masks_dir}/<sequence>/<frame>.png")
    print("videos:   " + ", ".join(str(out / f"{s.name}.mp4") for s in sequences) + "  (prediction | ground truth)")
    print(f"figure:   {figure_path}")
    print(f"scores:   {out}/global_results-demo.csv, per-sequence_results-demo.csv, per-frame_results-demo.csv")
    print(f"done in {time.perf_counter() - start:.0f} s")
    if weights.startswith("RANDOM"):
        _warn_random_weights()
    return 0


# ---------------------------------------------------------------------------------------------- steps
def _default_sequences(world: Path) -> list[str]:
    """The two shortest val videos and the shortest lookalike video (ties: by name), to stay fast."""
    from isvos_lite.data.sequences import list_frames

    def shortest(split: str, count: int) -> list[str]:
        listed = [n.strip() for n in (world / "ImageSets" / "2017" / f"{split}.txt").read_text().splitlines() if n.strip()]
        if not listed:
            raise ValueError(f"{world}/ImageSets/2017/{split}.txt lists no videos; regenerate the teaching world")
        lengths = {n: len(list_frames(world / "JPEGImages" / "480p" / n)) for n in listed}
        return sorted(listed, key=lambda n: (lengths[n], n))[:count]

    return shortest("val", 2) + shortest("lookalike", 1)


def _load_model(checkpoint: str | None, device: str):
    """(model, description): the given or shipped checkpoint, else random ``lite`` weights (loudly)."""
    import torch

    from isvos_lite.data import teaching
    from isvos_lite.checkpoint import load_checkpoint
    from isvos_lite.config import get_preset
    from isvos_lite.model.isvos import ISVOS

    if checkpoint is not None:
        return load_checkpoint(checkpoint, map_location=device), checkpoint
    try:
        path = teaching.teaching_checkpoint("full")
    except FileNotFoundError as err:
        print(f"{err}", file=sys.stderr)
        _warn_random_weights()
        torch.manual_seed(0)
        return ISVOS(get_preset("lite")).eval().to(device), "RANDOM lite weights (no checkpoint)"
    return load_checkpoint(path, map_location=device), str(path.relative_to(teaching.repo_root()))


def _warn_random_weights() -> None:
    bar = "!" * 78
    print(f"{bar}\n!! WARNING: checkpoints/lite.safetensors is missing: the demo runs with RANDOM weights, so the\n"
          f"!! masks and J&F below are meaningless. Restore it (git checkout -- checkpoints/) or train it\n"
          f"!! (the command is in checkpoints/README.md).\n{bar}", file=sys.stderr)


def _segment(model, sequences, masks_dir: Path, device: str,
             amp: bool | None = None) -> dict[str, dict[int, np.ndarray]]:
    """Palette PNGs per sequence; returns {sequence: {frame index: mask}}. ``amp`` None: the device's default."""
    from tqdm.auto import tqdm

    from isvos_lite.eval.runner import segment_sequence
    from isvos_lite.inference import default_amp

    amp = default_amp(device) if amp is None else amp
    return {seq.name: segment_sequence(model, seq, masks_dir, overwrite=True, device=device, amp=amp)
            for seq in tqdm(sequences, desc="demo", unit="video")}


def _frame_scores(seq, predicted: dict[int, np.ndarray]) -> dict[int, float]:
    """{frame index: J&F in percent} for the frames that have ground truth."""
    from isvos_lite.viz.comparison import frame_jf

    annotated = [t for t in seq.gt_indices if t in predicted]
    if not annotated:
        return {}
    values = frame_jf([seq.read_gt(t) for t in annotated], [predicted[t] for t in annotated],
                      object_ids=seq.object_ids)
    return dict(zip(annotated, values.tolist()))


def _videos(sequences, predictions, scores, out: Path) -> list[Path]:
    """One side-by-side video per sequence: prediction (with the frame's J&F) | ground truth."""
    from isvos_lite.viz.video_io import OverlayVideoWriter
    from isvos_lite.viz.comparison import side_by_side_frame

    paths = []
    for seq in sequences:
        gt_at = set(seq.gt_indices)
        with OverlayVideoWriter(out / f"{seq.name}.mp4", fps=VIDEO_FPS) as video:
            for t in range(len(seq)):
                gt = seq.read_gt(t) if t in gt_at else None
                video.write(side_by_side_frame(seq.read_frame(t), predictions[seq.name][t], gt,
                                               label=f"frame {t}", jf=scores[seq.name].get(t)))
        paths.append(video.path)
    return paths


def _why(seq, predicted, scores: dict[int, float], lookalike: bool = False) -> str:
    """A computed sentence on a video's weakest frame: which kind of wrong pixels dominate there."""
    from isvos_lite.viz.comparison import error_shares

    scored = {t: v for t, v in scores.items() if 0 < t < len(seq) - 1} or scores
    if not scored:
        return f"{seq.name}: no ground truth to compare with"
    worst = min(scored, key=scored.get)
    shares = error_shares(predicted[worst], seq.read_gt(worst))
    kind = max(("missed", "spurious", "wrong object"), key=shares.get)
    meaning = {"missed": "object pixels predicted as background (the mask lost part of the object)",
               "spurious": "background predicted as an object (the mask spilled onto something else"
                           + (", here most likely a look-alike wearing the target's texture)" if lookalike else ")"),
               "wrong object": "one object's pixels given to another (two objects confused)"}[kind]
    return (f"{seq.name}: weakest frame {worst} (J&F {scored[worst]:.1f}); {100 * shares[kind]:.0f} % of its "
            f"{shares['wrong pixels']} wrong pixels are {kind}: {meaning}")


def _score(world: Path, masks_dir: Path, out: Path, names: list[str]):
    from isvos_lite.eval.scorer import score_results

    return score_results(world, masks_dir, split="demo", sequences=names, out_dir=out, workers=1, progress=False)


def _sequence_means(result, name: str) -> tuple[float, float, float, int]:
    """(J&F, J, F, objects) of one sequence: means over its objects (as the global numbers average objects)."""
    rows = [row for row in result.per_sequence if row.sequence == name]
    j = float(np.mean([row.j_mean for row in rows]))
    f = float(np.mean([row.f_mean for row in rows]))
    return (j + f) / 2, j, f, len(rows)


def _split_names(world: Path, split: str) -> set[str]:
    listed = world / "ImageSets" / "2017" / f"{split}.txt"
    return set(listed.read_text().split()) if listed.exists() else set()


def _table(sequences, result, world: Path) -> str:
    lookalikes = _split_names(world, "lookalike")
    lines = [f"{'sequence':<16}{'kind':<12}{'frames':>7}{'objects':>9}{'J&F':>8}{'J':>8}{'F':>8}"]
    for seq in sequences:
        jf, j, f, objects = _sequence_means(result, seq.name)
        kind = "lookalike" if seq.name in lookalikes else "val"
        lines.append(f"{seq.name:<16}{kind:<12}{len(seq):>7}{objects:>9}{100 * jf:>8.1f}{100 * j:>8.1f}{100 * f:>8.1f}")
    g = result.global_metrics
    lines.append(f"{'all (objects)':<16}{'':<12}{sum(len(s) for s in sequences):>7}{len(result.per_sequence):>9}"
                 f"{100 * g['J&F-Mean']:>8.1f}{100 * g['J-Mean']:>8.1f}{100 * g['F-Mean']:>8.1f}")
    lines.append("(J&F, J and F in percent, as in the paper's tables)")
    return "\n".join(lines)


def _summary_figure(sequences, predictions, scores, result, path: Path) -> Path:
    """Two rows per video: ``FRAMES_IN_FIGURE`` evenly spaced frames with the predicted masks (titled with the frame's
    J&F in percent), and the ground truth below them."""
    from isvos_lite.viz import draw_overlay, new_figure, object_legend_handles, save_figure

    height, width = sequences[0].size
    figure, axes = new_figure(2 * len(sequences), FRAMES_IN_FIGURE, panel_size=(3.0, 3.0 * height / width + 0.5))
    ids: set[int] = set()
    for row, seq in enumerate(sequences):
        jf = 100 * _sequence_means(result, seq.name)[0]
        gt_at = set(seq.gt_indices)
        for col, t in enumerate(np.linspace(0, len(seq) - 1, FRAMES_IN_FIGURE).round().astype(int)):
            t = int(t)
            frame, mask = seq.read_frame(t), predictions[seq.name][t]
            ids.update(int(i) for i in np.unique(mask) if i)
            score = scores[seq.name].get(t)
            title = f"frame {t}" + (" (given)" if t == 0 else f": J&F {score:.1f}" if score is not None else "")
            draw_overlay(axes[2 * row, col], frame, mask, title=title)
            if t in gt_at:
                draw_overlay(axes[2 * row + 1, col], frame, seq.read_gt(t), title=f"frame {t}: ground truth")
            else:
                draw_overlay(axes[2 * row + 1, col], frame, title=f"frame {t}: not annotated")
        axes[2 * row, 0].set_ylabel(f"{seq.name}\nprediction\n(J&F {jf:.1f})", fontsize=12)
        axes[2 * row + 1, 0].set_ylabel("ground truth", fontsize=12)
    for ax in axes.flat:
        ax.title.set_fontsize(12)
    if ids:
        figure.legend(handles=object_legend_handles(sorted(ids)), loc="outside lower center",
                      ncols=min(len(ids), 8), fontsize=11, frameon=False)
    figure.suptitle("isvos-lite demo: prediction (J&F per frame, percent) above the ground truth; frame 0 is given",
                    fontsize=14)
    return save_figure(figure, path)
