"""Frames with object masks on top: overlays, frame strips, prediction vs. ground truth.

The grammar: every object keeps its palette colour (:mod:`isvos_lite.viz.colors`) and every panel is titled
``frame t``. Two styles (``style=``):

- ``"outline"`` (the default): the object's own pixels are left as they are and its contour is drawn as a band in
  the object's colour (:func:`outline_width` pixels, inside the object) with a white rim just outside it, so the
  mask stays visible on a scene of any colour and the texture under it (the look-alike cue) is not hidden;
- ``"fill"``: the object colour blended over the frame at ``alpha`` with a one-pixel contour in the full colour
  (SAM 2's notebooks, the DAVIS tools).

These are the pictures of paper Fig. 1, 5 and 6.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import cv2
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.patches import Patch

from isvos_lite.viz.arrays import as_frame, as_frames, as_mask, as_masks
from isvos_lite.viz.colors import ERROR_COLORS, object_legend_handles, object_palette
from isvos_lite.viz.figures import grid_shape, new_figure, style_image_axes

__all__ = [
    "OVERLAY_STYLES", "outline_width", "mask_boundary", "overlay_mask", "draw_overlay", "show_frames",
    "error_map", "error_overlay", "mask_ious", "draw_comparison", "compare_masks",
]

ERROR_CODES = {"missed": 1, "spurious": 2, "wrong object": 3}  # values of error_map; 0 = correct
OVERLAY_STYLES = ("outline", "fill")


def outline_width(shape: tuple[int, int]) -> int:
    """Width in pixels of an outline band on an (H, W) frame: 1/60 of the shorter side, at least 2 (3 px on the
    teaching world's 160-pixel-high frames, 8 px at 480p), so it stays visible when the frame is shown small."""
    return max(2, int(round(min(shape[:2]) / 60)))


def _check_style(style: str) -> str:
    if style not in OVERLAY_STYLES:
        raise ValueError(f"style: expected one of {', '.join(map(repr, OVERLAY_STYLES))}, got {style!r}")
    return style


def mask_boundary(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool: object pixels (id > 0) with a 4-neighbour of another id (the inner contour)."""
    ids = as_mask(mask, "mask")
    padded = np.pad(ids, 1, mode="edge")            # (H+2, W+2); the image border is not a contour
    centre = padded[1:-1, 1:-1]
    differs = ((padded[:-2, 1:-1] != centre) | (padded[2:, 1:-1] != centre)
               | (padded[1:-1, :-2] != centre) | (padded[1:-1, 2:] != centre))
    return differs & (centre > 0)


def _selected_ids(mask: np.ndarray, object_ids: Iterable[int] | None) -> list[int]:
    present = [int(i) for i in np.unique(mask) if i != 0]
    if object_ids is None:
        return present
    return [i for i in present if i in {int(j) for j in object_ids}]


def overlay_mask(frame: Any, mask: Any, alpha: float = 0.6, contour: bool = True,
                 object_ids: Iterable[int] | None = None, style: str = "outline", palette: str | None = None,
                 line_width: int | None = None) -> np.ndarray:
    """Draw object masks over a frame: (H, W, 3) uint8 frame + (H, W) ids -> (H, W, 3) uint8.

    ``style="outline"`` (default): the pixels of object k within ``line_width`` (default :func:`outline_width`) of
    its contour take colour k of ``palette`` and the pixels just outside it (half that width) turn white; the rest
    of the frame is unchanged (``alpha`` and ``contour`` are not used). ``style="fill"``: each pixel of object k
    becomes ``round((1 - alpha) * frame + alpha * palette[k])``; with ``contour`` its boundary pixels take the full
    colour. ``palette``: "contrast" or "davis" (:func:`isvos_lite.viz.colors.object_palette`; None: the active one).
    ``object_ids`` restricts the drawing to those objects (the others stay unpainted); background (0) is never painted.
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    _check_style(style)
    colours_of = object_palette(palette)
    image = as_frame(frame, "frame")
    ids = as_mask(mask, "mask", shape=image.shape[:2])
    chosen = _selected_ids(ids, object_ids)
    out = image.copy()
    if style == "outline":
        width = outline_width(ids.shape) if line_width is None else int(line_width)
        if width < 1:
            raise ValueError(f"line_width must be >= 1 pixel, got {line_width}")
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
        bands = []
        for object_id in chosen:
            region = (ids == object_id).astype(np.uint8)                  # (H, W) 0/1
            inner = cv2.erode(region, kernel, iterations=width, borderType=cv2.BORDER_REPLICATE)
            grown = cv2.dilate(region, kernel, iterations=max(1, width // 2), borderType=cv2.BORDER_REPLICATE)
            out[(grown > 0) & (region == 0)] = 255                        # the white rim outside the object
            bands.append((object_id, (region > 0) & (inner == 0)))
        for object_id, band in bands:                                     # colour bands over any neighbour's rim
            out[band] = colours_of[object_id]
        return out
    selected = np.isin(ids, chosen)                                       # (H, W) pixels to paint
    colours = colours_of[ids].astype(np.float64)                          # (H, W, 3)
    blended = (1.0 - alpha) * image.astype(np.float64) + alpha * colours
    out[selected] = np.round(blended[selected]).astype(np.uint8)
    if contour:
        edge = mask_boundary(ids) & selected
        out[edge] = colours_of[ids[edge]]
    return out


def draw_overlay(ax: Axes, frame: Any, mask: Any = None, *, alpha: float = 0.6, contour: bool = True,
                 object_ids: Iterable[int] | None = None, title: str | None = None, style: str = "outline",
                 palette: str | None = None) -> AxesImage:
    """Draw a frame (with its mask overlaid when given, see :func:`overlay_mask`) into ``ax``; returns the AxesImage."""
    image = as_frame(frame, "frame")
    if mask is not None:
        image = overlay_mask(image, mask, alpha=alpha, contour=contour, object_ids=object_ids, style=style,
                             palette=palette)
    artist = ax.imshow(image, interpolation="nearest")
    style_image_axes(ax, title)
    return artist


def show_frames(frames: Any, masks: Any = None, frame_indices: Sequence[int] | None = None,
                titles: Sequence[str] | None = None, ncols: int = 5, alpha: float = 0.6,
                contour: bool = True, object_ids: Iterable[int] | None = None, legend: bool = True,
                panel_size: float = 2.6, style: str = "outline", palette: str | None = None) -> Figure:
    """A strip / grid of frames with their masks, titled ``frame t`` (SAM 2's strided overview).

    Args:
        frames: list of (H, W, 3) frames, or (T, H, W, 3) / (T, 3, H, W).
        masks: None, or one (H, W) id mask per frame (entries may be None: unannotated frames).
        frame_indices: which frames to show (e.g. ``range(0, T, 5)``); default all. Titles use them.
        titles: one title per shown frame, replacing ``frame t``.
        ncols: panels per row. object_ids: draw only these objects. legend: "object k" swatches.
        style / palette: how masks are drawn (:func:`overlay_mask`).
    """
    video = as_frames(frames, "frames")
    shapes = [frame.shape[:2] for frame in video]
    mask_list = as_masks(masks, "masks", shapes) if masks is not None else [None] * len(video)
    shown = list(range(len(video))) if frame_indices is None else [int(t) for t in frame_indices]
    for t in shown:
        if not 0 <= t < len(video):
            raise ValueError(f"frame_indices: {t} is outside the video's frames 0..{len(video) - 1}")
    if titles is not None and len(titles) != len(shown):
        raise ValueError(f"titles: got {len(titles)} titles for {len(shown)} shown frames")

    rows, cols = grid_shape(len(shown), ncols)
    height, width = shapes[shown[0]]
    figure, axes = new_figure(rows, cols, panel_size=(panel_size, panel_size * height / width + 0.35))
    for panel, t in enumerate(shown):
        title = titles[panel] if titles is not None else f"frame {t}"
        draw_overlay(axes.flat[panel], video[t], mask_list[t], alpha=alpha, contour=contour,
                     object_ids=object_ids, title=title, style=style, palette=palette)
    for ax in axes.flat[len(shown):]:
        ax.set_axis_off()
    if legend and masks is not None:
        present = sorted({int(i) for t in shown if mask_list[t] is not None for i in np.unique(mask_list[t]) if i})
        if object_ids is not None:
            present = [i for i in present if i in {int(j) for j in object_ids}]
        if present:
            figure.legend(handles=object_legend_handles(present, palette), loc="outside lower center",
                          ncols=min(len(present), 8), fontsize=12, frameon=False)
    return figure


def error_map(pred: Any, gt: Any, object_ids: Iterable[int] | None = None) -> np.ndarray:
    """(H, W) error codes of a prediction against ground truth: 0 correct, 1 missed, 2 spurious, 3 wrong object.

    missed: a ground-truth object pixel predicted as background; spurious: background predicted as
    an object; wrong object: an object pixel given to another object (the look-alike case of Fig. 1).
    ``object_ids`` limits the comparison to those objects (others count as background).
    """
    truth = as_mask(gt, "gt")
    guess = as_mask(pred, "pred", shape=truth.shape)
    if object_ids is not None:
        keep = [int(i) for i in object_ids]
        truth = np.where(np.isin(truth, keep), truth, 0)
        guess = np.where(np.isin(guess, keep), guess, 0)
    codes = np.zeros(truth.shape, dtype=np.int64)
    codes[(truth > 0) & (guess == 0)] = ERROR_CODES["missed"]
    codes[(truth == 0) & (guess > 0)] = ERROR_CODES["spurious"]
    codes[(truth > 0) & (guess > 0) & (truth != guess)] = ERROR_CODES["wrong object"]
    return codes


def error_overlay(frame: Any, pred: Any, gt: Any, alpha: float = 0.6,
                  object_ids: Iterable[int] | None = None) -> np.ndarray:
    """The frame in grey with error pixels in the ERROR_COLORS: (H, W, 3) uint8."""
    image = as_frame(frame, "frame")
    codes = error_map(pred, gt, object_ids)
    if codes.shape != image.shape[:2]:
        raise ValueError(f"gt: shape {codes.shape} does not match the frame's (H, W) = {image.shape[:2]}")
    grey = image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])   # (H, W) luminance
    out = np.repeat(grey[:, :, None], 3, axis=2)                          # (H, W, 3)
    for name, code in ERROR_CODES.items():
        where = codes == code
        out[where] = (1.0 - alpha) * out[where] + alpha * np.array(ERROR_COLORS[name], dtype=np.float64)
    return np.round(out).astype(np.uint8)


def mask_ious(pred: Any, gt: Any, object_ids: Iterable[int] | None = None) -> dict[int, float]:
    """Per-object IoU (the region similarity J of one frame, §4.1) for every object in pred or gt."""
    truth = as_mask(gt, "gt")
    guess = as_mask(pred, "pred", shape=truth.shape)
    ids = sorted(({int(i) for i in np.unique(truth)} | {int(i) for i in np.unique(guess)}) - {0})
    if object_ids is not None:
        ids = [i for i in ids if i in {int(j) for j in object_ids}]
    return {i: float(((guess == i) & (truth == i)).sum() / ((guess == i) | (truth == i)).sum()) for i in ids}


def draw_comparison(axes: Sequence[Axes], frame: Any, pred: Any, gt: Any | None, *, alpha: float = 0.6,
                    object_ids: Iterable[int] | None = None, style: str = "outline",
                    palette: str | None = None) -> list[AxesImage]:
    """Fill three axes: prediction overlay, ground-truth overlay, error map. Returns their images.

    With ``gt`` None (an unannotated frame) the last two panels show the plain frame. ``style`` / ``palette``:
    how the masks are drawn (:func:`overlay_mask`).
    """
    drawn = dict(alpha=alpha, object_ids=object_ids, style=style, palette=palette)
    image = as_frame(frame, "frame")
    prediction = as_mask(pred, "pred", shape=image.shape[:2])
    if gt is None:
        return [draw_overlay(axes[0], image, prediction, title="prediction", **drawn),
                draw_overlay(axes[1], image, title="ground truth: not annotated"),
                draw_overlay(axes[2], image, title="errors: no ground truth")]
    truth = as_mask(gt, "gt", shape=image.shape[:2])
    ious = mask_ious(prediction, truth, object_ids)
    iou_text = f"J {100 * np.mean(list(ious.values())):.1f}" if ious else "no objects"     # J = IoU, in percent
    codes = error_map(prediction, truth, object_ids)
    wrong = int((codes > 0).sum())
    images = [
        draw_overlay(axes[0], image, prediction, title=f"prediction ({iou_text})", **drawn),
        draw_overlay(axes[1], image, truth, title="ground truth", **drawn),
        axes[2].imshow(error_overlay(image, prediction, truth, alpha=alpha, object_ids=object_ids), interpolation="nearest"),
    ]
    style_image_axes(axes[2], f"errors: {wrong} px ({100.0 * wrong / codes.size:.1f}%)")
    handles = [Patch(facecolor=np.array(ERROR_COLORS[name]) / 255.0, label=name) for name in ERROR_CODES]
    axes[2].legend(handles=handles, loc="lower right", fontsize=10, framealpha=0.8)
    return images


def compare_masks(frame: Any, pred: Any, gt: Any, alpha: float = 0.6, frame_index: int | None = None,
                  object_ids: Iterable[int] | None = None, panel_size: float = 3.2, style: str = "outline",
                  palette: str | None = None) -> Figure:
    """Prediction vs. ground truth on one frame, errors highlighted (missed / spurious / wrong object)."""
    image = as_frame(frame, "frame")
    height, width = image.shape[:2]
    figure, axes = new_figure(1, 3, panel_size=(panel_size, panel_size * height / width + 0.5))
    draw_comparison(axes[0], image, pred, gt, alpha=alpha, object_ids=object_ids, style=style, palette=palette)
    if frame_index is not None:
        figure.suptitle(f"frame {frame_index}", fontsize=13)
    return figure
