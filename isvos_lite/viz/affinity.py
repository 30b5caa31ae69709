"""Where does one query pixel match in memory? Affinity heat maps over the memory frames.

Memory reading (Eq. 3, §3.2) compares the query key of every pixel of the current frame with the
keys of every position of every memory frame. Fix one query pixel and the result is one weight per
memory position, ``affinity_rows`` of shape (T, h, w) on the key grid (stride 16). This module
draws that row as a heat map over each memory frame (one shared colour scale and one colour bar:
data-driven, or fixed with ``color_range`` so that an explorer's colours mean the same weight on every
click), marks the top-k positions that inference keeps (§4.1: top-k = 20), outlines the objects of
the given masks (which shape is the target?), and shows the query frame with the picked pixel and the
key-grid cell it falls in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colorbar import Colorbar
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.patches import Rectangle
from matplotlib.patheffects import withStroke

from isvos_lite.viz.arrays import as_frame, as_frames, as_mask, to_numpy
from isvos_lite.viz.colors import object_color
from isvos_lite.viz.figures import grid_shape, new_figure, style_image_axes

__all__ = ["top_k_positions", "check_affinity_rows", "grid_extent", "AffinityPanels", "draw_affinity", "plot_affinity",
           "fixed_color_range", "draw_outlines"]

QUERY_MARKER = dict(marker="*", s=260, c="lime", edgecolors="white", linewidths=1.25, zorder=3)
TOP_K_MARKER = dict(marker="o", s=70, facecolors="none", edgecolors="cyan", linewidths=1.6, zorder=3)


def check_affinity_rows(affinity_rows: Any, num_memory_frames: int) -> np.ndarray:
    """Return the rows as a finite float (T, h, w) array with T = number of memory frames, or raise."""
    rows = to_numpy(affinity_rows, "affinity_rows")
    if rows.ndim != 3:
        raise ValueError(
            f"affinity_rows: expected shape (T, h, w) (one weight per memory position for one query pixel), got {rows.shape}; "
            "for a full affinity (T*h*w, h*w) take column [:, query_index] and reshape to (T, h, w)")
    if rows.shape[0] != num_memory_frames:
        raise ValueError(f"affinity_rows: has {rows.shape[0]} maps but memory_frames has {num_memory_frames} frames; pass one map per memory frame")
    rows = rows.astype(np.float64)
    if not np.all(np.isfinite(rows)):
        raise ValueError("affinity_rows: contains NaN or infinite values")
    return rows


def top_k_positions(affinity_rows: Any, k: int) -> np.ndarray:
    """The k memory positions with the highest weight over all memory frames, best first: (k, 3) (t, row, col).

    This is the set that top-k memory reading keeps for the query pixel (§4.1, "top-k filter").
    """
    rows = to_numpy(affinity_rows, "affinity_rows")
    if rows.ndim != 3:
        raise ValueError(f"affinity_rows: expected shape (T, h, w), got {rows.shape}")
    if not isinstance(k, (int, np.integer)) or not 1 <= k <= rows.size:
        raise ValueError(f"top_k must be an integer in 1..{rows.size} (the number of memory positions), got {k!r}")
    flat = rows.reshape(-1)                                     # (T*h*w,)
    best = np.argpartition(-flat, k - 1)[:k]                    # k largest, unordered
    best = best[np.argsort(-flat[best], kind="stable")]         # best first
    return np.stack(np.unravel_index(best, rows.shape), axis=1)  # (k, 3)


@dataclass
class AffinityPanels:
    """The artists of one affinity figure, so a widget (and a test) can find them again."""

    memory_axes: list[Axes]
    query_ax: Axes
    heat_images: list[AxesImage]     # one heat map per memory frame
    query_image: AxesImage
    colorbar: Colorbar
    top_k: np.ndarray | None         # (k, 3) marked positions, or None


def grid_extent(grid_hw: tuple[int, int], stride: float = 16, scale: float = 1.0,
                pad: tuple[float, float, float, float] = (0, 0, 0, 0)) -> tuple[float, float, float, float]:
    """Where an (h, w) key grid lies on the original frame, as a matplotlib extent (left, right, bottom, top).

    The model sees the frame resized by ``scale`` and padded by ``pad`` = (left, right, top, bottom)
    pixels (to a multiple of 32); key cell (r, c) covers internal pixels [c*stride, (c+1)*stride).
    Mapped back, the grid may reach past the frame's border (the padding); coordinates are pixel
    centres, so pixel i spans i - 0.5 .. i + 0.5.
    """
    height, width = grid_hw
    left_pad, _, top_pad, _ = pad
    return (-left_pad / scale - 0.5, (width * stride - left_pad) / scale - 0.5,
            (height * stride - top_pad) / scale - 0.5, -top_pad / scale - 0.5)


class _KeyGrid:
    """Cell geometry of a key grid drawn with a given extent: cell centres and the cell of a pixel."""

    def __init__(self, grid_hw: tuple[int, int], extent: tuple[float, float, float, float]):
        self.rows, self.cols = grid_hw
        self.left, right, bottom, self.top = extent
        self.cell_w = (right - self.left) / self.cols
        self.cell_h = (bottom - self.top) / self.rows

    def centres(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.left + (cols + 0.5) * self.cell_w, self.top + (rows + 0.5) * self.cell_h

    def cell_of(self, x: float, y: float) -> tuple[int, int]:
        row = int(np.clip((y - self.top) // self.cell_h, 0, self.rows - 1))
        col = int(np.clip((x - self.left) // self.cell_w, 0, self.cols - 1))
        return row, col


OUTLINE_WIDTH = 2.2     # points: the object outlines drawn over the affinity panels (white halo around them)


def fixed_color_range(scale: str) -> tuple[float, float]:
    """The fixed colour range of affinity weights: they are the softmax of Eq. (3) over every memory position, so
    each lies in [0, 1] (and the weights of one query pixel sum to 1). Linear: (0, 1); log: (10^-6, 1)."""
    if scale not in ("linear", "log"):
        raise ValueError(f"scale: expected 'linear' or 'log', got {scale!r}")
    return (0.0, 1.0) if scale == "linear" else (10.0 ** -LOG_DECADES, 1.0)


def draw_outlines(ax: Axes, mask: Any, object_ids: Sequence[int] | None = None, palette: str | None = None,
                  shape: tuple[int, int] | None = None) -> list:
    """Outline objects of an (H, W) id mask on ``ax`` (in the object's colour with a white halo, over any heat map).

    Returns the contour sets (gid ``outline:k``); ``object_ids`` chooses the objects (default: all in the mask).
    """
    ids = as_mask(mask, "mask", shape=shape)
    present = [int(i) for i in np.unique(ids) if i != 0]
    chosen = present if object_ids is None else [i for i in present if i in {int(j) for j in object_ids}]
    drawn = []
    for object_id in chosen:
        contours = ax.contour((ids == object_id).astype(np.float64), levels=[0.5],
                              colors=[object_color(object_id, palette)], linewidths=OUTLINE_WIDTH, zorder=2.5)
        contours.set_path_effects([withStroke(linewidth=OUTLINE_WIDTH + 2.5, foreground="white")])
        contours.set_gid(f"outline:{object_id}")
        drawn.append(contours)
    return drawn


def draw_affinity(figure: Figure | None, memory_frames: Any, affinity_rows: Any, query_frame: Any,
                  query_xy: Sequence[float], top_k: int | None = None,
                  memory_indices: Sequence[int] | None = None, query_index: int | None = None,
                  ncols: int = 4, alpha: float = 0.6, cmap: str = "inferno", title: str | None = None,
                  extent: tuple[float, float, float, float] | None = None,
                  panel_size: float = 2.8, scale: str = "linear",
                  color_range: tuple[float, float] | None = None, memory_masks: Sequence[Any] | None = None,
                  query_mask: Any = None, outline_ids: Sequence[int] | None = None,
                  palette: str | None = None) -> tuple[Figure, AffinityPanels]:
    """Draw the affinity of one query pixel over the memory frames (into ``figure`` if given, cleared first).

    ``extent`` places the key grid on the frames (see :func:`grid_extent`); default: the grid
    covers each frame exactly. ``scale="log"`` colours the weights on a logarithmic scale from a tenth of the k-th
    largest weight (at most six decades below the largest; :func:`log_scale_floor`) up to the largest, and leaves
    weaker positions transparent: matching is often nearly one-hot, and on a linear scale only the best match is
    visible. ``color_range`` = (low, high) fixes the colour scale instead (e.g. :func:`fixed_color_range`), so the
    same colour means the same weight for every query pixel; on a log scale weights below ``low`` are transparent.
    ``memory_masks`` (one (H, W) id mask per memory frame, entries may be None) and ``query_mask`` outline the
    objects ``outline_ids`` (default: all) in their palette colours (:func:`draw_outlines`).
    """
    if scale not in ("linear", "log"):
        raise ValueError(f"scale: expected 'linear' or 'log', got {scale!r}")
    if color_range is not None:
        low_fixed, high_fixed = (float(v) for v in color_range)
        if not (np.isfinite(low_fixed) and np.isfinite(high_fixed) and low_fixed < high_fixed) \
                or (scale == "log" and low_fixed <= 0):
            raise ValueError(f"color_range: expected (low, high) with low < high{' and low > 0 (log scale)' if scale == 'log' else ''}, "
                             f"got {color_range!r}")
    memory = as_frames(memory_frames, "memory_frames")
    if memory_masks is not None and len(memory_masks) != len(memory):
        raise ValueError(f"memory_masks: got {len(memory_masks)} masks for {len(memory)} memory frames")
    rows = check_affinity_rows(affinity_rows, len(memory))           # (T, h, w)
    query = as_frame(query_frame, "query_frame")
    height, width = query.shape[:2]
    x, y = _check_query_xy(query_xy, height, width)
    if memory_indices is not None and len(memory_indices) != len(memory):
        raise ValueError(f"memory_indices: got {len(memory_indices)} indices for {len(memory)} memory frames")
    marked = top_k_positions(rows, top_k) if top_k is not None else None

    num_rows, num_cols = grid_shape(len(memory) + 1, ncols)
    figure, axes = new_figure(num_rows, num_cols, panel_size=(panel_size, panel_size * height / width + 0.4),
                              figure=figure)
    low, high = float(rows.min()), float(rows.max())
    if high <= low:                                                  # a constant row: keep a valid colour scale
        high = low + 1e-12
    if color_range is not None:
        low, high = low_fixed, high_fixed
    if scale == "log":
        if color_range is None:
            low = min(log_scale_floor(rows, top_k), high / 10)
        norm = LogNorm(vmin=low, vmax=high)
        shown = np.ma.masked_less(rows, low)                         # weaker than the floor: transparent
        alpha = max(alpha, 0.85)                                     # few cells are coloured: draw them clearly
    else:
        norm, shown = Normalize(vmin=low, vmax=high), rows
    grid_hw = rows.shape[1:]
    memory_axes, heat_images = [], []
    for t, frame in enumerate(memory):
        ax = axes.flat[t]
        frame_h, frame_w = frame.shape[:2]
        frame_extent = extent if extent is not None else (-0.5, frame_w - 0.5, frame_h - 0.5, -0.5)
        ax.imshow(frame, interpolation="nearest")
        heat = ax.imshow(shown[t], cmap=cmap, norm=norm, alpha=alpha, interpolation="nearest", extent=frame_extent)
        if memory_masks is not None and memory_masks[t] is not None:
            draw_outlines(ax, memory_masks[t], outline_ids, palette, shape=(frame_h, frame_w))
        if marked is not None:
            here = marked[marked[:, 0] == t]                          # (k_t, 3) rows (t, r, c)
            xs, ys = _KeyGrid(grid_hw, frame_extent).centres(here[:, 1], here[:, 2])
            ax.scatter(xs, ys, gid="top_k", label=f"top-{top_k}", **TOP_K_MARKER)
        ax.set_xlim(-0.5, frame_w - 0.5)                              # cut off grid cells over the padding
        ax.set_ylim(frame_h - 0.5, -0.5)
        style_image_axes(ax, f"memory frame {memory_indices[t]}" if memory_indices is not None else f"memory {t}")
        memory_axes.append(ax)
        heat_images.append(heat)

    query_ax = axes.flat[len(memory)]
    query_image = query_ax.imshow(query, interpolation="nearest")
    if query_mask is not None:
        draw_outlines(query_ax, query_mask, outline_ids, palette, shape=(height, width))
    query_grid = _KeyGrid(grid_hw, extent if extent is not None else (-0.5, width - 0.5, height - 0.5, -0.5))
    cell_row, cell_col = query_grid.cell_of(x, y)
    query_ax.add_patch(Rectangle((query_grid.left + cell_col * query_grid.cell_w, query_grid.top + cell_row * query_grid.cell_h),
                                 query_grid.cell_w, query_grid.cell_h,
                                 fill=False, edgecolor="lime", linewidth=1.5, gid="query_cell"))
    query_ax.scatter([x], [y], gid="query_pixel", **QUERY_MARKER)
    query_ax.set_xlim(-0.5, width - 0.5)
    query_ax.set_ylim(height - 0.5, -0.5)
    frame_label = f"frame {query_index}" if query_index is not None else "query frame"
    style_image_axes(query_ax, f"{frame_label}: query ({x:g}, {y:g})")
    for ax in axes.flat[len(memory) + 1:]:
        ax.set_axis_off()

    colorbar = figure.colorbar(heat_images[0], ax=memory_axes, shrink=0.85,
                               label="affinity weight" + (" (log scale)" if scale == "log" else ""))
    colorbar.solids.set_alpha(1.0)                                   # the scale itself is drawn opaque
    if title is not None:
        figure.suptitle(title, fontsize=13)
    return figure, AffinityPanels(memory_axes, query_ax, heat_images, query_image, colorbar, marked)


LOG_DECADES = 6         # a log-scale map shows weights down to a millionth of the best match


def log_scale_floor(rows: np.ndarray, top_k: int | None = None) -> float:
    """The lowest weight a log-scale affinity map colours: a tenth of the k-th largest weight (every top-k match
    is coloured, one decade more is shown), but never below a millionth of the largest weight (a trained model's
    k-th match can be 10^14 times weaker than the best: such weights are circled, not coloured)."""
    flat = np.sort(np.asarray(rows, dtype=np.float64).reshape(-1))[::-1]
    positive = flat[flat > 0]
    if positive.size == 0:
        return 1e-12
    lowest = float(positive[0]) * 10.0 ** -LOG_DECADES
    if top_k:
        return max(float(positive[min(top_k, positive.size) - 1]) / 10, lowest)
    return lowest


def plot_affinity(memory_frames: Any, affinity_rows: Any, query_frame: Any, query_xy: Sequence[float],
                  top_k: int | None = None, memory_indices: Sequence[int] | None = None,
                  query_index: int | None = None, ncols: int = 4, alpha: float = 0.6, cmap: str = "inferno",
                  title: str | None = None, extent: tuple[float, float, float, float] | None = None,
                  scale: str = "linear", color_range: tuple[float, float] | None = None,
                  memory_masks: Sequence[Any] | None = None, query_mask: Any = None,
                  outline_ids: Sequence[int] | None = None) -> Figure:
    """Heat maps of one query pixel's affinity over each memory frame, plus the query frame (Eq. 3).

    Args:
        memory_frames: T frames (H, W, 3) (or (T, H, W, 3) / (T, 3, H, W)).
        affinity_rows: (T, h, w) weights of the query pixel over every memory position (key grid,
            e.g. h = H/16); colour limits come from the data, with one colour bar for all maps.
        query_frame: the current frame (H, W, 3).
        query_xy: the query pixel (x = column, y = row) in query-frame pixels; starred, with its key cell boxed.
        top_k: if given, circle the k highest-weight positions over all memory frames (what top-k reading keeps).
        memory_indices / query_index: video frame numbers for the ``memory frame t`` / ``frame t`` titles.
        extent: where the key grid lies on the frames when the model padded or resized them
            (:func:`grid_extent`); default: the grid covers each frame exactly.
        scale: "linear" or "log" (every top-k weight visible; see :func:`draw_affinity`).
        color_range: (low, high) fixes the colour scale (default: from the data); see :func:`fixed_color_range`.
        memory_masks / query_mask / outline_ids: outline these objects of the masks (e.g. the target).
    """
    figure, _ = draw_affinity(None, memory_frames, affinity_rows, query_frame, query_xy, top_k=top_k,
                              memory_indices=memory_indices, query_index=query_index, ncols=ncols,
                              alpha=alpha, cmap=cmap, title=title, extent=extent, scale=scale,
                              color_range=color_range, memory_masks=memory_masks, query_mask=query_mask,
                              outline_ids=outline_ids)
    return figure


def _check_query_xy(query_xy: Sequence[float], height: int, width: int) -> tuple[float, float]:
    values = to_numpy(query_xy, "query_xy").reshape(-1)
    if values.size != 2:
        raise ValueError(f"query_xy: expected (x, y), got {query_xy!r}")
    x, y = float(values[0]), float(values[1])
    if not (0 <= x < width and 0 <= y < height):
        raise ValueError(f"query_xy: ({x:g}, {y:g}) lies outside the query frame (x in 0..{width - 1}, y in 0..{height - 1})")
    return x, y
