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

import sys
import time
from pathlib import Path

import numpy as np

from isvos_lite.threads import add_threads_argument, use_threads

DEFAULT_OUT = Path("outputs/demo")
FRAMES_IN_FIGURE = 5


def add_arguments(parser) -> None:
    parser.add_argument("--out", default=str(DEFAULT_OUT), metavar="DIR", help=f"output folder (default: {DEFAULT_OUT})")
    parser.add_argument("--checkpoint", default=None, metavar="CKPT",
                        help="weights to use (default: the shipped checkpoints/lite.safetensors)")
    parser.add_argument("--world", default=None, metavar="ROOT",
                        help="teaching-world folder (default: data/toy, generated if missing)")
    parser.add_argument("--sequences", nargs="+", default=None, metavar="SEQ",
                        help="videos to segment (default: the two shortest val videos and the shortest lookalike video)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    add_threads_argument(parser)


def run(args) -> int:
    import torch

    from isvos_lite import course
    from isvos_lite.data.sequences import davis_sequences

    start = time.perf_counter()
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} exists and is a file; pass a folder")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA device is available; use --device cpu")
    print(use_threads(args.threads))
    world = Path(args.world) if args.world else course.ensure_teaching_world()
    names = args.sequences or _default_sequences(world)
    sequences = davis_sequences(world, names=names)
    model, weights = _load_model(args.checkpoint, args.device)
    print(f"demo: {len(sequences)} videos of the teaching world {world}, model {weights}")

    masks_dir = out / "masks"
    predictions = _segment(model, sequences, masks_dir, out, args.device)
    result = _score(world, masks_dir, out, names)
    figure_path = _summary_figure(sequences, predictions, result, out / "summary.png")

    print()
    print(_table(sequences, result, world))
    print()
    print(f"masks:    {masks_dir}/<sequence>/<frame>.png")
    print("videos:   " + ", ".join(str(out / f"{s.name}.mp4") for s in sequences))
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

    from isvos_lite import course
    from isvos_lite.checkpoint import load_checkpoint
    from isvos_lite.config import get_preset
    from isvos_lite.model.isvos import ISVOS

    if checkpoint is not None:
        return load_checkpoint(checkpoint, map_location=device), checkpoint
    try:
        path = course.teaching_checkpoint("full")
    except FileNotFoundError as err:
        print(f"{err}", file=sys.stderr)
        _warn_random_weights()
        torch.manual_seed(0)
        return ISVOS(get_preset("lite")).eval().to(device), "RANDOM lite weights (no checkpoint)"
    return load_checkpoint(path, map_location=device), str(path.relative_to(course.repo_root()))


def _warn_random_weights() -> None:
    bar = "!" * 78
    print(f"{bar}\n!! WARNING: checkpoints/lite.safetensors is missing: the demo runs with RANDOM weights, so the\n"
          f"!! masks and J&F below are meaningless. Restore it (git checkout -- checkpoints/) or train it\n"
          f"!! (the command is in checkpoints/README.md).\n{bar}", file=sys.stderr)


def _segment(model, sequences, masks_dir: Path, out: Path, device: str) -> dict[str, dict[int, np.ndarray]]:
    """Masks (PNGs) and an overlay video per sequence; returns {sequence: {frame index: mask}}."""
    from tqdm.auto import tqdm

    from isvos_lite.eval.runner import segment_sequence
    from isvos_lite.eval.video_io import OverlayVideoWriter

    predictions = {}
    for seq in tqdm(sequences, desc="demo", unit="video"):
        with OverlayVideoWriter(out / f"{seq.name}.mp4", fps=12) as video:
            predictions[seq.name] = segment_sequence(
                model, seq, masks_dir, overwrite=True, device=device,
                on_frame=lambda index, frame, mask: video.write(frame, mask))
    return predictions


def _score(world: Path, masks_dir: Path, out: Path, names: list[str]):
    from isvos_lite.eval.scorer import score_results

    return score_results(world, masks_dir, split="demo", sequences=names, out_dir=out, workers=1, progress=False)


def _sequence_means(result, name: str) -> tuple[float, float, float, int]:
    """(J&F, J, F, objects) of one sequence: means over its objects (as the global numbers average objects)."""
    rows = [row for row in result.per_sequence if row.sequence == name]
    j = float(np.mean([row.j_mean for row in rows]))
    f = float(np.mean([row.f_mean for row in rows]))
    return (j + f) / 2, j, f, len(rows)


def _table(sequences, result, world: Path) -> str:
    lookalikes = set((world / "ImageSets" / "2017" / "lookalike.txt").read_text().split()) \
        if (world / "ImageSets" / "2017" / "lookalike.txt").exists() else set()
    lines = [f"{'sequence':<16}{'kind':<12}{'frames':>7}{'objects':>9}{'J&F':>8}{'J':>8}{'F':>8}"]
    for seq in sequences:
        jf, j, f, objects = _sequence_means(result, seq.name)
        kind = "lookalike" if seq.name in lookalikes else "val"
        lines.append(f"{seq.name:<16}{kind:<12}{len(seq):>7}{objects:>9}{jf:>8.3f}{j:>8.3f}{f:>8.3f}")
    g = result.global_metrics
    lines.append(f"{'all (objects)':<16}{'':<12}{sum(len(s) for s in sequences):>7}{len(result.per_sequence):>9}"
                 f"{g['J&F-Mean']:>8.3f}{g['J-Mean']:>8.3f}{g['F-Mean']:>8.3f}")
    return "\n".join(lines)


def _summary_figure(sequences, predictions, result, path: Path) -> Path:
    """One row per video: ``FRAMES_IN_FIGURE`` evenly spaced frames with the predicted masks overlaid."""
    from isvos_lite.viz import draw_overlay, new_figure, object_legend_handles, save_figure

    height, width = sequences[0].size
    figure, axes = new_figure(len(sequences), FRAMES_IN_FIGURE, panel_size=(2.6, 2.6 * height / width + 0.4))
    ids: set[int] = set()
    for row, seq in enumerate(sequences):
        jf = _sequence_means(result, seq.name)[0]
        for col, t in enumerate(np.linspace(0, len(seq) - 1, FRAMES_IN_FIGURE).round().astype(int)):
            mask = predictions[seq.name][int(t)]
            ids.update(int(i) for i in np.unique(mask) if i)
            title = f"{seq.name} · frame {t}" if col == 0 else f"frame {t}"
            if col == 0:
                title += f"\nJ&F {jf:.3f}"
            draw_overlay(axes[row, col], seq.read_frame(int(t)), mask, title=title)
    if ids:
        figure.legend(handles=object_legend_handles(sorted(ids)), loc="outside lower center",
                      ncols=min(len(ids), 8), fontsize=8, frameon=False)
    figure.suptitle("isvos-lite demo: predicted masks (frame 0 is the given mask)")
    return save_figure(figure, path)
