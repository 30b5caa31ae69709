"""Prediction beside ground truth, with the per-frame J&F, for figures and videos people judge by eye.

A mask alone cannot be judged: is the speckle on the right an error or a second object? These helpers put the
ground truth next to the prediction and print the frame's J&F (percent, mean over the annotated objects, as the
paper's tables) so every picture says how good it is. Used by ``isvos-lite demo`` (``summary.png`` and the videos)
and by notebook 00.
"""

from __future__ import annotations

from typing import Any, Sequence

import cv2
import numpy as np
from matplotlib.figure import Figure

from isvos_lite.viz.arrays import as_frame, as_mask
from isvos_lite.viz.colors import object_legend_handles
from isvos_lite.viz.figures import new_figure
from isvos_lite.viz.overlays import draw_overlay, error_map, overlay_mask

__all__ = ["frame_jf", "error_shares", "side_by_side_frame", "show_prediction_and_truth"]

LABEL_BAND = 22          # pixels of the text band above each half of a side-by-side video frame


def frame_jf(gt_masks: Any, pred_masks: Any, object_ids: Sequence[int] | None = None) -> np.ndarray:
    """(T,) J&F in percent of every frame, the mean over the annotated objects (``per_frame_scores``)."""
    from isvos_lite.eval.scorer import per_frame_scores

    gt_masks = np.stack([as_mask(m, "gt") for m in gt_masks])                          # (T, H, W)
    if object_ids is None:                                          # every object annotated in any of the frames
        object_ids = sorted(int(i) for i in np.unique(gt_masks) if 0 < i < 255)
    scores = per_frame_scores(gt_masks, np.stack(pred_masks).astype(gt_masks.dtype), object_ids=object_ids)
    return 100 * np.mean([(s["J"] + s["F"]) / 2 for s in scores.values()], axis=0)


def error_shares(pred: Any, gt: Any) -> dict[str, float]:
    """Where the wrong pixels of one frame are: {"missed", "spurious", "wrong object"} -> share of all wrong pixels,
    plus "wrong pixels" (their count) — which kind of error dominates says why a frame fails."""
    codes = error_map(pred, gt)
    wrong = int((codes > 0).sum())
    shares = {name: float((codes == code).sum()) / max(wrong, 1)
              for name, code in (("missed", 1), ("spurious", 2), ("wrong object", 3))}
    shares["wrong pixels"] = wrong
    return shares


def side_by_side_frame(frame: Any, pred: Any, gt: Any | None, label: str = "", jf: float | None = None,
                       style: str = "outline", palette: str | None = None) -> np.ndarray:
    """One video frame: prediction overlay | ground-truth overlay, each under a text band.

    (H, W, 3) frame, (H, W) ids -> (H + band, 2W + 4, 3) uint8 RGB. ``label`` (e.g. "frame 12") and ``jf`` (percent)
    go above the prediction; without ``gt`` the right half says "no ground truth". ``style`` / ``palette``: how the
    masks are drawn (:func:`isvos_lite.viz.overlays.overlay_mask`).
    """
    image = as_frame(frame, "frame")
    height, width = image.shape[:2]
    left = overlay_mask(image, as_mask(pred, "pred", shape=(height, width)), style=style, palette=palette)
    if gt is None:
        right = (image * 0.35).astype(np.uint8)
        right_text = "ground truth: not annotated"
    else:
        right = overlay_mask(image, as_mask(gt, "gt", shape=(height, width)), style=style, palette=palette)
        right_text = "ground truth"
    left_text = "prediction" + (f", {label}" if label else "") + (f", J&F {jf:.1f}" if jf is not None else "")
    canvas = np.full((height + LABEL_BAND, 2 * width + 4, 3), 255, np.uint8)
    canvas[LABEL_BAND:, :width] = left
    canvas[LABEL_BAND:, width + 4:] = right
    scale = 0.45 if width < 400 else 0.6
    for x, text in ((3, left_text), (width + 7, right_text)):
        cv2.putText(canvas, text, (x, LABEL_BAND - 7), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas


def show_prediction_and_truth(frames: Sequence[Any], pred_masks: Sequence[Any], gt_masks: Sequence[Any],
                              frame_indices: Sequence[int], title: str | None = None, given: Sequence[int] = (0,),
                              panel_size: float = 3.0, figure: Figure | None = None, style: str = "outline",
                              palette: str | None = None) -> Figure:
    """Two rows: the prediction at each chosen frame (titled with the frame's J&F in percent) above the ground truth.
    Frames in ``given`` (the first frame, whose mask the method was given) say so instead of a score. ``style`` /
    ``palette``: how the masks are drawn (:func:`isvos_lite.viz.overlays.overlay_mask`)."""
    indices = [int(t) for t in frame_indices]
    jf = frame_jf([gt_masks[t] for t in indices], [pred_masks[t] for t in indices]) if indices else []
    height, width = as_frame(frames[indices[0]], "frame").shape[:2]
    figure, axes = new_figure(2, len(indices), panel_size=(panel_size, panel_size * height / width + 0.45),
                              figure=figure)
    ids: set[int] = set()
    for column, (t, score) in enumerate(zip(indices, jf)):
        ids.update(int(i) for i in np.unique(gt_masks[t]) if i)
        scored = "given mask" if t in given else f"J&F {score:.1f}"
        draw_overlay(axes[0, column], frames[t], pred_masks[t], title=f"frame {t}: {scored}", style=style,
                     palette=palette)
        draw_overlay(axes[1, column], frames[t], gt_masks[t], title=f"frame {t}: ground truth", style=style,
                     palette=palette)
    for ax in axes.flat:
        ax.title.set_fontsize(12)
    axes[0, 0].set_ylabel("prediction", fontsize=12)
    axes[1, 0].set_ylabel("ground truth", fontsize=12)
    if ids:
        figure.legend(handles=object_legend_handles(sorted(ids), palette), loc="outside lower center",
                      ncols=min(len(ids), 8), fontsize=12, frameon=False)
    if title:
        figure.suptitle(title, fontsize=14)
    return figure
