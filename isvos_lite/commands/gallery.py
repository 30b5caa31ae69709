"""``isvos-lite gallery``: a figure of a DAVIS-format dataset (frames of several sequences, masks overlaid).

Example::

    isvos-lite gallery --data data/toy --out figures/toy_gallery.png

Rows are sequences (by default two of each split listed in ``ImageSets/2017``: train, val, the
``lookalike`` split (only the target is annotated) and the ``heldout`` split), columns are frames spread evenly over each video. Objects keep
their DAVIS palette colour, blended at alpha 0.6 (the course's visual grammar, ``isvos_lite.viz``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from isvos_lite.data.sequences import davis_sequences


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="DAVIS-format root (e.g. the teaching world from `isvos-lite toy-data`)")
    parser.add_argument("--out", required=True, help="figure file (.png, .pdf, .svg)")
    parser.add_argument("--splits", nargs="+", default=None,
                        help="splits of ImageSets/2017 to show (default: train val lookalike heldout, those that exist)")
    parser.add_argument("--per-split", type=int, default=2, help="sequences per split (default 2)")
    parser.add_argument("--frames", type=int, default=5, help="frames per sequence (default 5)")
    parser.add_argument("--alpha", type=float, default=0.6, help="mask opacity (default 0.6)")
    parser.add_argument("--dpi", type=int, default=110, help="resolution of the saved figure (default 110)")


def gallery_figure(data: str | Path, splits: list[str] | None = None, per_split: int = 2, frames: int = 5, alpha: float = 0.6):
    """Build the gallery as a matplotlib Figure (usable from a notebook)."""
    from isvos_lite.viz.figures import new_figure
    from isvos_lite.viz.overlays import draw_overlay

    root = Path(data)
    if not root.exists():
        raise FileNotFoundError(f"--data {root} does not exist; generate it with `isvos-lite toy-data --out {root}`")
    if per_split < 1 or frames < 1:
        raise ValueError(f"--per-split and --frames must be >= 1, got {per_split}, {frames}")
    if splits is None:
        splits = [s for s in ("train", "val", "lookalike", "heldout") if (root / "ImageSets" / "2017" / f"{s}.txt").exists()]
        if not splits:
            raise FileNotFoundError(f"{root}/ImageSets/2017 has none of train.txt, val.txt, lookalike.txt, heldout.txt; is {root} a DAVIS root?")
    rows = []
    for split in splits:
        for seq in davis_sequences(root, split)[:per_split]:
            rows.append((split, seq))
    figure, axes = new_figure(len(rows), frames, panel_size=(2.6, 1.7))
    for r, (split, seq) in enumerate(rows):
        indices = np.linspace(0, len(seq) - 1, frames).round().astype(int)
        for c, index in enumerate(indices):
            mask = seq.read_gt(int(index)) if int(index) in seq.gt_paths else None
            draw_overlay(axes[r, c], seq.read_frame(int(index)), mask, alpha=alpha, title=f"frame {index}")
        axes[r, 0].set_ylabel(f"{split}\n{seq.name}", fontsize=9)
    figure.suptitle(f"{root.name}: {', '.join(splits)} (masks at alpha {alpha})", fontsize=11)
    return figure


def run(args: argparse.Namespace) -> int:
    from isvos_lite.viz.figures import save_figure

    figure = gallery_figure(args.data, args.splits, args.per_split, args.frames, args.alpha)
    path = save_figure(figure, args.out, dpi=args.dpi)
    print(f"gallery written to {path}")
    return 0
