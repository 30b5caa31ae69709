"""Write the paper-figure recreations of the course as PNGs (for the README and for lecturers).

    python scripts/make_figures.py                      # docs/img/fig1_jf_curves.png, docs/img/fig8_readout_features.png
    python scripts/make_figures.py --only fig8 --frames 10
    ISVOS_LITE_SMALL=1 python scripts/make_figures.py --out /tmp/figs    # the tiny world, seconds

* **Fig. 1** (notebook 07): per-frame J&F of vanilla matching (the ``no_qe_mpf`` checkpoint: no query enhancement,
  no multi-path fusion) and of ISVOS (``full``) on a lookalike video of the teaching world, averaged over objects,
  with the frames where the two differ most (both predictions and the ground truth).
* **Fig. 8** (notebook 08): one frame, the readout F_mem of ISVOS, w/o QE and w/o QE & MPF (objects stacked along
  the channels) and the stride-8 pixel-decoder map P_2, as PCA colours; each network's colour basis is fitted over
  all recorded frames of the video.

The figures use the same package functions as the notebooks (``segment_sequence``, ``per_frame_scores``,
``VideoSegmenter(record=True)``, ``viz.plot_jf_curves``, ``viz.plot_readout_features``). A missing checkpoint is
replaced by random ``lite`` weights with a printed note, and the figure's title says so. The affinity explorer's
picture (docs/img/affinity_explorer.png) comes from the browser test: ``pytest -m browser tests/test_browser.py``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from isvos_lite import course, viz
from isvos_lite.config import get_preset
from isvos_lite.data.sequences import Sequence, davis_sequences
from isvos_lite.eval.runner import segment_sequence
from isvos_lite.eval.scorer import per_frame_scores
from isvos_lite.inference import VideoSegmenter
from isvos_lite.model.isvos import ISVOS

ABLATION_SWITCHES = {"full": {}, "no_qe": {"query_enhancement": False},
                     "no_qe_mpf": {"query_enhancement": False, "multi_path_fusion": False}}
FIGURES = ("fig1", "fig8")
MEAN_COLOUR = np.array([124, 116, 104], dtype=np.uint8)     # ImageNet mean: the colour of the model's zero padding


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="docs/img", help="folder for the PNGs (default: docs/img)")
    parser.add_argument("--only", nargs="+", choices=FIGURES, default=list(FIGURES), help="which figures to make")
    parser.add_argument("--world", default=None,
                        help="teaching world folder (default: data/toy, or data/toy_small with ISVOS_LITE_SMALL=1; "
                             "generated if missing)")
    parser.add_argument("--sequence-index", type=int, default=0, help="which lookalike video (default: 0)")
    parser.add_argument("--frames", type=int, default=None,
                        help="use only the first N frames of the video (default: Fig. 1 the whole video, Fig. 8 20)")
    parser.add_argument("--differing-frames", type=int, default=3, help="Fig. 1: frames of largest disagreement shown")
    parser.add_argument("--dpi", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.frames is not None and args.frames < 3:
        parser.error(f"--frames must be at least 3 (frame 0 is given, two more are needed for a curve), got {args.frames}")
    if args.differing_frames < 1:
        parser.error(f"--differing-frames must be >= 1, got {args.differing_frames}")
    return args


def load_variant(variant: str, seed: int) -> tuple[torch.nn.Module, bool]:
    """The shipped checkpoint of a variant, or random `lite` weights (with a note) when it is missing."""
    try:
        return course.load_teaching_model(variant), True
    except (FileNotFoundError, ValueError, RuntimeError, OSError) as err:
        print(f"note: {variant}: {err}\n      -> random 'lite' weights: the figure shows an untrained network")
        torch.manual_seed(seed)
        return ISVOS(get_preset("lite", **ABLATION_SWITCHES[variant])).eval(), False


def lookalike_video(world: Path, index: int, max_frames: int | None) -> Sequence:
    videos = davis_sequences(world, split="lookalike")
    if not 0 <= index < len(videos):
        raise ValueError(f"--sequence-index {index}: the world {world} has {len(videos)} lookalike videos "
                         f"(0..{len(videos) - 1})")
    video = videos[index]
    if max_frames is not None and max_frames < len(video):
        video = Sequence(video.name, video.frame_paths[:max_frames], given_mask_paths={0: video.given_mask_paths[0]},
                         gt_paths={t: p for t, p in video.gt_paths.items() if t < max_frames})
    return video


def untrained_note(trained: dict[str, bool]) -> str:
    missing = [name for name, ok in trained.items() if not ok]
    return f" [random weights: {', '.join(missing)}]" if missing else ""


# ---------------------------------------------------------------------------------------------- Fig. 1
def make_fig1(world: Path, args: argparse.Namespace) -> Figure:
    """Per-frame J&F of vanilla matching vs ISVOS on a lookalike video, and the frames where they differ most."""
    video = lookalike_video(world, args.sequence_index, args.frames)
    frames = [video.read_frame(t) for t in range(len(video))]                   # each (H, W, 3) uint8
    truth = np.stack([video.read_gt(t) for t in range(len(video))])            # (T, H, W)
    methods = {"vanilla matching (w/o QE & MPF)": "no_qe_mpf", "ISVOS": "full"}
    masks, scores, trained = {}, {}, {}
    for name, variant in methods.items():
        model, trained[name] = load_variant(variant, args.seed)
        predicted = segment_sequence(model, video, progress=True)              # {t: (H, W) ids}
        masks[name] = np.stack([predicted[t] for t in range(len(video))])     # (T, H, W)
        per_object = per_frame_scores(truth, masks[name])                     # {object: {"J": (T,), "F": (T,)}}
        scores[name] = {"J": np.stack([s["J"][1:] for s in per_object.values()]),   # (O, T-1): frame 0 is given
                        "F": np.stack([s["F"][1:] for s in per_object.values()]),
                        "frames": np.arange(1, len(video))}

    names = list(scores)
    jf = {name: viz.per_frame_curve(scores[name])[1] for name in names}       # (T-1,) each
    gap = np.abs(jf[names[0]] - jf[names[1]])
    shown = sorted((np.argsort(-gap, kind="stable")[:args.differing_frames] + 1).tolist())
    height, width = truth.shape[1:]

    figure = Figure(figsize=(10.0, 3.2 + len(shown) * (3.2 * height / width + 0.45)), layout="constrained")
    top, bottom = figure.subfigures(2, 1, height_ratios=(3.2, len(shown) * (3.2 * height / width + 0.45)))
    viz.plot_jf_curves(scores, ax=top.subplots(), title=f"per-frame J&F on {video.name} (averaged over objects)")
    axes = bottom.subplots(len(shown), 3, squeeze=False)
    for row, t in enumerate(shown):
        for column, name in enumerate(names):
            viz.draw_overlay(axes[row, column], frames[t], masks[name][t],
                             title=f"frame {t} · {name.split(' (')[0]}: J&F {jf[name][t - 1]:.2f}")
        viz.draw_overlay(axes[row, 2], frames[t], truth[t], title=f"frame {t} · ground truth")
    figure.suptitle("Fig. 1 at teaching scale: vanilla matching vs ISVOS" + untrained_note(trained), fontsize=12)
    return figure


# ---------------------------------------------------------------------------------------------- Fig. 8
def padded_like_the_model(image: np.ndarray, pad: tuple[int, int, int, int]) -> np.ndarray:
    """A frame (H, W, 3) or mask (H, W) padded as the segmenter pads it (left, right, top, bottom)."""
    left, right, top, bottom = pad
    out = np.zeros((image.shape[0] + top + bottom, image.shape[1] + left + right) + image.shape[2:], image.dtype)
    if image.ndim == 3:
        out[:] = MEAN_COLOUR
    out[top:top + image.shape[0], left:left + image.shape[1]] = image
    return out


def make_fig8(world: Path, args: argparse.Namespace) -> Figure:
    """The query frame, F_mem of the three Table 3 variants and P_2, as PCA colours (one basis per network)."""
    video = lookalike_video(world, args.sequence_index, args.frames if args.frames is not None else 20)
    variants = {"ISVOS": "full", "w/o QE": "no_qe", "w/o QE & MPF": "no_qe_mpf"}
    features: dict[str, list[torch.Tensor]] = {}
    trained = {}
    p2: list[torch.Tensor] = []
    last = None
    for name, variant in variants.items():
        model, trained[name] = load_variant(variant, args.seed)
        segmenter = VideoSegmenter(model, record=True)
        readouts = []
        for t in range(len(video)):
            segmenter.step(video.read_frame(t), video.read_given_mask(0) if t == 0 else None)
            if t > 0:
                readouts.append(segmenter.last.readout.flatten(0, 1))          # (O*C_v, h, w): objects stacked
                if name == "ISVOS":
                    p2.append(segmenter.last.pixel_features[2])                # (C_d, h8, w8): P_s8
        features[f"F_mem · {name}"] = readouts
        if name == "ISVOS":
            last = segmenter.last
    features["P_2 · ISVOS pixel decoder"] = p2
    if last.scale != 1.0:
        raise ValueError(f"the frames of {video.name} were resized by the segmenter (scale {last.scale:g}); this "
                         "figure draws unscaled teaching-world frames only")
    bases = {name: viz.PCABasis.fit(maps) for name, maps in features.items()}   # per network, over all frames
    t = len(video) - 1
    figure = viz.plot_readout_features(padded_like_the_model(video.read_frame(t), last.pad),
                                       {name: maps[t - 1] for name, maps in features.items()},
                                       mask=padded_like_the_model(video.read_gt(t), last.pad),
                                       bases=bases, frame_index=t, ncols=5)
    figure.suptitle(f"Fig. 8 at teaching scale: readout features on {video.name}" + untrained_note(trained), fontsize=11)
    return figure


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    course.goto_repo_root()
    torch.manual_seed(args.seed)
    world = course.ensure_teaching_world(args.world)
    out = Path(args.out)
    makers = {"fig1": (make_fig1, "fig1_jf_curves.png"), "fig8": (make_fig8, "fig8_readout_features.png")}
    for key in args.only:
        make, file_name = makers[key]
        start = time.perf_counter()
        path = viz.save_figure(make(world, args), out / file_name, dpi=args.dpi)
        print(f"wrote {path} ({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
