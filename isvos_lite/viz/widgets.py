"""Interactive explorers for the notebooks: thin ipywidgets shells over the plotting functions.

Each explorer keeps its figure in ``.fig``, exposes its controls as attributes (``frame_slider``,
``x_slider``, ...), and redraws in a plain ``update()`` method; the controls' callbacks and the
figure's click handler (``on_click``) are plain methods too. So a test can drive an explorer with
no browser and no kernel: set ``slider.value`` (what the browser does) or replay a matplotlib
``MouseEvent`` (what an ipympl click does), then look at ``.fig``.

In a Jupyter kernel with ipympl installed (the ``notebooks`` extra), whatever the ``%matplotlib`` backend, the
figure is a live ipympl canvas and **clicking** picks pixels or frames (the sliders follow); elsewhere, or with
``ISVOS_LITE_EXPLORER=sliders``, the figure is re-rendered into an Output widget and the sliders do everything
(:func:`clickable_canvas`). The figures are not registered with pyplot: a later ``plt.plot`` in the
notebook must not draw into an explorer (it would, were the explorer's figure pyplot's "current
figure"), and the inline backend must not show it a second time. Display an explorer by making it
the last expression of a cell (or ``display(ex)``).
"""

from __future__ import annotations

import importlib.util
import os
from abc import ABC, abstractmethod
from typing import Any, Callable, Mapping, Sequence

import ipywidgets as widgets
import matplotlib
import numpy as np
from matplotlib.backend_bases import MouseEvent
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from isvos_lite.viz.affinity import draw_affinity, fixed_color_range
from isvos_lite.viz.arrays import as_frame, as_frames, as_masks, check_same_hw, to_numpy
from isvos_lite.viz.colors import object_color_hex
from isvos_lite.viz.curves import METRICS, per_frame_curve, plot_jf_curves
from isvos_lite.viz.overlays import draw_comparison, draw_overlay
from isvos_lite.viz.readout import as_feature_map, plot_readout_features, shared_bases

__all__ = ["FigureExplorer", "VideoBrowser", "AffinityExplorer", "ReadoutExplorer", "JFCurveExplorer",
           "clickable_canvas"]

EXPLORER_ENV = "ISVOS_LITE_EXPLORER"      # auto (default) | click | sliders
MAX_WIDTH_IN = 10.0                       # explorers are at most this wide: their text stays readable projected
                                          # (isvos_lite.viz.figure_check.DISPLAY_WIDTH_IN)


class FigureExplorer(ABC):
    """Plumbing shared by the explorers: one persistent figure, a view widget, redraw bookkeeping."""

    def __init__(self, figsize: tuple[float, float]):
        self.fig = _new_canvas_figure(figsize)
        if isinstance(self.fig.canvas, widgets.DOMWidget):  # ipympl: the canvas is itself a widget
            self.fig.canvas.header_visible = False
            self.fig.canvas.resizable = False
            # ipympl overlays its toolbar on the figure on hover, over the panels one clicks; the explorers are driven
            # by clicks and controls, not zoom and pan (https://matplotlib.org/ipympl/examples/full-example.html)
            self.fig.canvas.toolbar_visible = False
            self._output = None
            self.view: widgets.Widget = self.fig.canvas
        else:                                              # inline / Agg: show renders in an Output widget
            self._output = widgets.Output()
            self.view = self._output
        self.fig.canvas.mpl_connect("button_press_event", self.on_click)
        self.draw_count = 0                                # number of completed update() calls
        self._suspended = False                            # True while several controls change at once

    def controls(self) -> list[widgets.Widget]:
        """The control widgets shown above the figure."""
        return []

    @property
    def widget(self) -> widgets.VBox:
        """Controls above the figure, ready to display."""
        return widgets.VBox([widgets.HBox(self.controls(), layout=widgets.Layout(flex_flow="row wrap")), self.view])

    def _ipython_display_(self) -> None:
        from IPython.display import display
        display(self.widget)

    def on_change(self, change: Mapping[str, Any] | None = None) -> None:
        """Callback of every control: redraw (unless several controls are being set together)."""
        if not self._suspended:
            self.update()

    def set_together(self, *assignments: tuple[Any, Any]) -> None:
        """Set several controls, given as (widget, value) pairs, with one redraw instead of one per control."""
        self._suspended = True
        try:
            for widget, value in assignments:
                widget.value = value
        finally:
            self._suspended = False
        self.update()

    def on_click(self, event: MouseEvent) -> None:
        """Mouse click on the figure; explorers that react to clicks override it."""

    @staticmethod
    def is_pick(event: MouseEvent, ax: Any) -> bool:
        """A left click inside ``ax`` that is not part of zooming or panning with the ipympl toolbar."""
        toolbar = getattr(event.canvas, "toolbar", None)
        if toolbar is not None and getattr(toolbar, "mode", ""):
            return False
        return ax is not None and event.inaxes is ax and event.button == 1 and event.xdata is not None

    @abstractmethod
    def update(self) -> None:
        """Redraw the figure from the current control values."""

    def _refresh(self) -> None:
        """Push the redrawn figure to the screen."""
        self.draw_count += 1
        if self._output is None:
            self.fig.canvas.draw_idle()                     # ipympl sends the new image to the browser
        elif _in_ipython():
            from IPython.display import clear_output, display
            with self._output:
                clear_output(wait=True)
                display(self.fig)

    def close(self) -> None:
        """Close the view (the ipympl canvas widget, or the Output widget)."""
        self.view.close()


class VideoBrowser(FigureExplorer):
    """Scrub through a video with its predicted masks, per-object toggles and ground truth.

    With ``gt_masks`` the figure shows prediction | ground truth | errors for the current frame
    (errors: missed, spurious, wrong object); without, the prediction overlay alone.
    """

    def __init__(self, frames: Any, pred_masks: Any, gt_masks: Any = None, object_ids: Sequence[int] | None = None,
                 alpha: float = 0.6, panel_size: float = 3.4, style: str = "outline"):
        self.frames = as_frames(frames, "frames")
        height, width = check_same_hw(self.frames, "frames")
        shapes = [frame.shape[:2] for frame in self.frames]
        self.pred_masks = as_masks(pred_masks, "pred_masks", shapes)
        self.gt_masks = as_masks(gt_masks, "gt_masks", shapes) if gt_masks is not None else None
        if object_ids is None:
            masks = [m for m in self.pred_masks + (self.gt_masks or []) if m is not None]
            object_ids = sorted({int(i) for m in masks for i in np.unique(m) if i != 0})
        self.object_ids = [int(i) for i in object_ids]
        self.alpha, self.style = alpha, style                # style: "outline" or "fill" (viz.overlays.overlay_mask)
        panels = 3 if self.gt_masks is not None else 1
        super().__init__(figsize=(panel_size * panels, panel_size * height / width + 0.6))

        self.frame_slider = widgets.IntSlider(value=0, min=0, max=len(self.frames) - 1, description="frame",
                                              continuous_update=False)
        self.object_toggles = {
            object_id: widgets.ToggleButton(value=True, description=f"object {object_id}",
                                            tooltip=f"show object {object_id}", layout=widgets.Layout(width="auto"))
            for object_id in self.object_ids}
        for object_id, toggle in self.object_toggles.items():
            toggle.style.text_color = object_color_hex(object_id)   # the object's own palette colour
        self.frame_slider.observe(self.on_change, names="value")
        for toggle in self.object_toggles.values():
            toggle.observe(self.on_change, names="value")
        self.update()

    def controls(self) -> list[widgets.Widget]:
        return [self.frame_slider, *self.object_toggles.values()]

    @property
    def selected_ids(self) -> list[int]:
        return [object_id for object_id, toggle in self.object_toggles.items() if toggle.value]

    def update(self) -> None:
        t = self.frame_slider.value
        frame, pred = self.frames[t], self.pred_masks[t]
        self.fig.clear()
        if self.gt_masks is None:
            ax = self.fig.subplots(1, 1)
            draw_overlay(ax, frame, pred, alpha=self.alpha, object_ids=self.selected_ids, title=f"frame {t}",
                         style=self.style)
        else:
            axes = self.fig.subplots(1, 3)
            if pred is None:
                pred = np.zeros(frame.shape[:2], dtype=np.int64)
            draw_comparison(axes, frame, pred, self.gt_masks[t], alpha=self.alpha, object_ids=self.selected_ids,
                            style=self.style)
            self.fig.suptitle(f"frame {t}", fontsize=13)
        self._refresh()


class AffinityExplorer(FigureExplorer):
    """Pick a query pixel in the current frame and see where it matches in each memory frame (Eq. 3).

    ``affinity_for(query_xy, variant)`` computes the answer for any model: given the query pixel
    (x, y) in query-frame pixels and the selected variant (e.g. "with query enhancement" /
    "without query enhancement", §3.2 and Table 3), it returns ``(affinity_rows, top_k)`` with
    rows of shape (T, h, w), one map per memory frame, and top_k an int or None. Pick the pixel
    with the two sliders or by clicking the query frame (ipympl). ``extent`` places the key grid
    on padded/resized frames (:func:`isvos_lite.viz.affinity.grid_extent`).

    ``memory_masks`` (one (H, W) id mask per memory frame) and ``query_mask`` outline the objects ``outline_ids``
    (default: all; e.g. ``[1]``, the target) on every panel, so a room can tell which shape is the target. The
    colour scale is **fixed** by default (``color_scale="fixed"``: :func:`isvos_lite.viz.affinity.fixed_color_range`,
    the weights are softmax probabilities in [0, 1]), so a colour means the same weight after every click;
    ``"per click"`` re-ranges it to each pixel's weights (the "colour scale" buttons switch between the two).
    """

    COLOR_SCALES = ("fixed", "per click")

    def __init__(self, affinity_for: Callable[[tuple[int, int], Any], Any], memory_frames: Any, query_frame: Any,
                 variants: Sequence[str] | None = ("with query enhancement", "without query enhancement"),
                 memory_indices: Sequence[int] | None = None, query_index: int | None = None,
                 query_xy: tuple[int, int] | None = None, extent: tuple[float, float, float, float] | None = None,
                 ncols: int = 4, panel_size: float = 2.8, scale: str = "linear",
                 memory_masks: Sequence[Any] | None = None, query_mask: Any = None,
                 outline_ids: Sequence[int] | None = None, color_scale: str = "fixed"):
        if not callable(affinity_for):
            raise ValueError(f"affinity_for: expected a function (query_xy, variant) -> (affinity_rows, top_k), got {type(affinity_for).__name__}")
        self.affinity_for = affinity_for
        self.memory_frames = as_frames(memory_frames, "memory_frames")
        self.query_frame = as_frame(query_frame, "query_frame")
        self.memory_indices, self.query_index, self.ncols, self.extent = memory_indices, query_index, ncols, extent
        self.scale = scale                                   # "linear" or "log" colour scale of the heat maps
        fixed_color_range(scale)                             # validates scale
        if color_scale not in self.COLOR_SCALES:
            raise ValueError(f"color_scale: expected one of {self.COLOR_SCALES}, got {color_scale!r}")
        if memory_masks is not None and len(memory_masks) != len(self.memory_frames):
            raise ValueError(f"memory_masks: got {len(memory_masks)} masks for {len(self.memory_frames)} memory frames")
        self.memory_masks, self.query_mask, self.outline_ids = memory_masks, query_mask, outline_ids
        height, width = self.query_frame.shape[:2]
        if query_xy is None:
            query_xy = (width // 2, height // 2)
        panels = len(self.memory_frames) + 1
        cols = min(ncols, panels)
        rows = -(-panels // cols)
        super().__init__(figsize=(panel_size * cols + 1.0, (panel_size * height / width + 0.4) * rows))

        self.x_slider = widgets.IntSlider(value=int(query_xy[0]), min=0, max=width - 1, description="query x",
                                          continuous_update=False)
        self.y_slider = widgets.IntSlider(value=int(query_xy[1]), min=0, max=height - 1, description="query y",
                                          continuous_update=False)
        self.variants = list(variants) if variants else None
        self.variant_buttons = widgets.ToggleButtons(options=self.variants or ["(one variant)"], description="query key",
                                                     style={"button_width": "auto"})   # whole labels, not "with qu…"
        self.variant_buttons.layout.display = None if self.variants else "none"
        self.color_scale_buttons = widgets.ToggleButtons(options=list(self.COLOR_SCALES), value=color_scale,
                                                         description="colour scale", style={"button_width": "auto"})
        for control in (self.x_slider, self.y_slider, self.variant_buttons, self.color_scale_buttons):
            control.observe(self.on_change, names="value")
        self.panels = None
        self.last_rows: np.ndarray | None = None
        self.update()

    def controls(self) -> list[widgets.Widget]:
        return [self.x_slider, self.y_slider, self.variant_buttons, self.color_scale_buttons]

    @property
    def color_range(self) -> tuple[float, float] | None:
        """The fixed (low, high) of the colour scale, or None when it follows each pixel's weights."""
        return fixed_color_range(self.scale) if self.color_scale_buttons.value == "fixed" else None

    @property
    def query_xy(self) -> tuple[int, int]:
        return self.x_slider.value, self.y_slider.value

    def select(self, x: int, y: int) -> None:
        """Move the query pixel to (x, y) with one redraw."""
        self.set_together((self.x_slider, int(np.clip(x, 0, self.x_slider.max))),
                          (self.y_slider, int(np.clip(y, 0, self.y_slider.max))))

    def on_click(self, event: MouseEvent) -> None:
        if self.panels is None or not self.is_pick(event, self.panels.query_ax):
            return
        self.select(int(round(event.xdata)), int(round(event.ydata)))

    @property
    def variant(self) -> str | None:
        return self.variant_buttons.value if self.variants else None

    def update(self) -> None:
        variant = self.variant
        result = self.affinity_for(self.query_xy, variant)
        if isinstance(result, tuple) and len(result) == 2:
            rows, top_k = result
        else:
            rows, top_k = result, None
        self.last_rows = to_numpy(rows, "affinity_for(...)[0]")
        title = f"where query pixel {self.query_xy} matches in memory" + (f" - {variant}" if variant else "")
        self.fig, self.panels = draw_affinity(self.fig, self.memory_frames, self.last_rows, self.query_frame,
                                              self.query_xy, top_k=top_k, memory_indices=self.memory_indices,
                                              query_index=self.query_index, ncols=self.ncols, title=title,
                                              extent=self.extent, scale=self.scale, color_range=self.color_range,
                                              memory_masks=self.memory_masks, query_mask=self.query_mask,
                                              outline_ids=self.outline_ids)
        self._refresh()


class ReadoutExplorer(FigureExplorer):
    """Scrub through a video and see its readout features (and any other feature maps) as PCA colours (Fig. 8).

    ``features_by_name`` maps a name to one (C, h, w) map per frame. By default the colour basis is
    fitted once on all frames, so colours stay stable while scrubbing (same colour = same feature);
    "refit per frame" fits it on the shown frame only, for the most contrast.

    **Click** any panel (ipympl) to pick a position: the view switches to "similarity to the picked position", where
    each feature panel shows the cosine similarity of every cell's feature vector to the picked cell's (same map,
    same frame; -1..1), and the position is starred on every panel. A readout that tells the target from its
    look-alikes (Fig. 8) is similar on the target and dissimilar on them. ``pick(x, y)`` does the same from code.
    """

    BASIS_MODES = ("fixed over the video", "refit per frame")
    VIEWS = ("PCA colours", "similarity to the picked position")

    def __init__(self, frames: Any, features_by_name: Mapping[str, Sequence[Any]], masks: Any = None,
                 shared_basis: bool | str = "auto", clip_percentile: float = 1.0, ncols: int = 4, panel_size: float = 2.8,
                 first_frame: int = 0):
        self.frames = as_frames(frames, "frames")
        height, width = check_same_hw(self.frames, "frames")
        if not features_by_name:
            raise ValueError("features_by_name: is empty; pass {name: [one (C, h, w) map per frame]}")
        self.features_by_name = {}
        for name, maps in features_by_name.items():
            maps = list(maps) if isinstance(maps, (list, tuple)) else list(to_numpy(maps, f"features_by_name[{name!r}]"))
            if len(maps) != len(self.frames):
                raise ValueError(f"features_by_name[{name!r}]: has {len(maps)} maps for {len(self.frames)} frames; pass one per frame")
            self.features_by_name[name] = [as_feature_map(m, f"features_by_name[{name!r}][{t}]") for t, m in enumerate(maps)]
        self.masks = as_masks(masks, "masks", [f.shape[:2] for f in self.frames]) if masks is not None else None
        self.shared_basis, self.clip_percentile, self.ncols = shared_basis, clip_percentile, ncols
        self.video_bases = shared_bases({name: maps[0] for name, maps in self.features_by_name.items()}, shared_basis,
                                        clip_percentile, extra={name: maps[1:] for name, maps in self.features_by_name.items()})
        panels = len(self.features_by_name) + 1
        cols = min(ncols, panels)
        super().__init__(figsize=(panel_size * cols, (panel_size * height / width + 0.4) * -(-panels // cols) + 0.3))

        # the slider shows video frame numbers: frames[i] is video frame first_frame + i (e.g. 1 when the readouts
        # start at frame 1, the first frame that reads memory)
        self.first_frame = int(first_frame)
        self.frame_slider = widgets.IntSlider(value=self.first_frame, min=self.first_frame,
                                              max=self.first_frame + len(self.frames) - 1, description="frame",
                                              continuous_update=False)
        self.basis_buttons = widgets.ToggleButtons(options=list(self.BASIS_MODES), description="colours",
                                                   style={"button_width": "auto"})
        self.mask_checkbox = widgets.Checkbox(value=self.masks is not None, description="show masks",
                                              disabled=self.masks is None)
        self.view_buttons = widgets.ToggleButtons(options=list(self.VIEWS), description="show",
                                                  style={"button_width": "auto"})
        self.picked_xy: tuple[float, float] = ((width - 1) / 2, (height - 1) / 2)   # frame pixels (x, y)
        for control in (self.frame_slider, self.basis_buttons, self.mask_checkbox, self.view_buttons):
            control.observe(self.on_change, names="value")
        self.update()

    def controls(self) -> list[widgets.Widget]:
        return [self.frame_slider, self.basis_buttons, self.mask_checkbox, self.view_buttons]

    def similarity_map(self, name: Any, t: int, xy: tuple[float, float]) -> np.ndarray:
        """(h, w) cosine similarity of each cell of map ``name`` at video frame ``t`` to the cell under pixel ``xy``.

        The feature grid covers the frame (as in :func:`plot_readout_features`), so pixel (x, y) lies in cell
        (y * h / H, x * w / W).
        """
        features = self.features_by_name[name][t - self.first_frame]              # (C, h, w)
        channels, h, w = features.shape
        height, width = self.frames[0].shape[:2]
        row = int(np.clip(np.floor((xy[1] + 0.5) * h / height), 0, h - 1))
        col = int(np.clip(np.floor((xy[0] + 0.5) * w / width), 0, w - 1))
        vectors = features.reshape(channels, -1).astype(np.float64)
        norms = np.linalg.norm(vectors, axis=0)
        picked = vectors[:, row * w + col]
        return (picked @ vectors / np.maximum(norms * norms[row * w + col], 1e-12)).reshape(h, w)

    def pick(self, x: float, y: float) -> None:
        """Pick the position (x, y) in frame pixels and show the similarity view."""
        height, width = self.frames[0].shape[:2]
        self.picked_xy = (float(np.clip(x, 0, width - 1)), float(np.clip(y, 0, height - 1)))
        self.set_together((self.view_buttons, self.VIEWS[1]))

    def on_click(self, event: MouseEvent) -> None:
        panels = self.fig.axes[:len(self.features_by_name) + 1]            # the frame, then one panel per map
        if event.inaxes in panels and self.is_pick(event, event.inaxes):
            self.pick(event.xdata, event.ydata)

    def update(self) -> None:
        t = self.frame_slider.value                          # video frame number
        i = t - self.first_frame                             # its position in the lists
        features = {name: maps[i] for name, maps in self.features_by_name.items()}
        bases = self.video_bases if self.basis_buttons.value == self.BASIS_MODES[0] else None
        mask = self.masks[i] if self.masks is not None and self.mask_checkbox.value else None
        plot_readout_features(self.frames[i], features, mask=mask, shared_basis=self.shared_basis, frame_index=t,
                              bases=bases, ncols=self.ncols, clip_percentile=self.clip_percentile, figure=self.fig)
        if self.view_buttons.value == self.VIEWS[1]:
            height, width = self.frames[i].shape[:2]
            for ax, name in zip(self.fig.axes[1:], self.features_by_name):
                for image in ax.get_images():
                    image.remove()
                ax.imshow(self.similarity_map(name, t, self.picked_xy), cmap="coolwarm", vmin=-1.0, vmax=1.0,
                          interpolation="nearest", extent=(-0.5, width - 0.5, height - 0.5, -0.5))
                ax.set_title(f"{name}: cosine similarity", fontsize=ax.title.get_fontsize())
            for ax in self.fig.axes[:len(self.features_by_name) + 1]:
                ax.plot(*self.picked_xy, marker="*", markersize=14, color="yellow", markeredgecolor="black")
            self.fig.suptitle(f"cosine similarity to the picked position ({self.picked_xy[0]:.0f}, "
                              f"{self.picked_xy[1]:.0f}), -1 blue .. 1 red", fontsize=13)
        self._refresh()


class JFCurveExplorer(FigureExplorer):
    """Per-frame J&F curves on top, the chosen frame with every method's masks below (Fig. 1, interactive).

    Click a frame on the curve (ipympl) or move the slider: the panels show that frame with each
    method's prediction (and the ground truth), titled with the method's score there.
    """

    def __init__(self, per_frame: Mapping[Any, Mapping[str, Any]], frames: Any, masks_by_name: Any = None,
                 gt_masks: Any = None, metric: str = "J&F", alpha: float = 0.6, panel_size: float = 2.8,
                 style: str = "outline"):
        self.frames = as_frames(frames, "frames")
        height, width = check_same_hw(self.frames, "frames")
        shapes = [frame.shape[:2] for frame in self.frames]
        if not per_frame:
            raise ValueError("per_frame: is empty; pass {name: {'J': [...], 'F': [...]}}")
        self.per_frame = dict(per_frame)
        for name, scores in self.per_frame.items():
            frames_scored, _ = per_frame_curve(scores, metric, name=f"per_frame[{name!r}]")
            if frames_scored.size and (frames_scored.min() < 0 or frames_scored.max() >= len(self.frames)):
                raise ValueError(f"per_frame[{name!r}]: frame numbers {frames_scored.min()}..{frames_scored.max()} "
                                 f"fall outside the video's frames 0..{len(self.frames) - 1}")
        if masks_by_name is None:
            masks_by_name = {}
        elif not isinstance(masks_by_name, Mapping):
            masks_by_name = {"prediction": masks_by_name}
        self.masks_by_name = {name: as_masks(masks, f"masks_by_name[{name!r}]", shapes) for name, masks in masks_by_name.items()}
        self.gt_masks = as_masks(gt_masks, "gt_masks", shapes) if gt_masks is not None else None
        self.alpha, self.style = alpha, style                # style: "outline" or "fill" (viz.overlays.overlay_mask)
        panels = max(len(self.masks_by_name) + (self.gt_masks is not None), 1)
        width_in = min(max(panel_size * panels, 7.0), MAX_WIDTH_IN)
        panel_size = width_in / panels if panel_size * panels > width_in else panel_size
        super().__init__(figsize=(width_in, 3.2 + panel_size * height / width + 0.4))

        self.frame_slider = widgets.IntSlider(value=0, min=0, max=len(self.frames) - 1, description="frame",
                                              continuous_update=False)
        self.metric_buttons = widgets.ToggleButtons(options=list(METRICS), value=metric, description="metric",
                                                    style={"button_width": "auto"})
        for control in (self.frame_slider, self.metric_buttons):
            control.observe(self.on_change, names="value")
        self.curve_ax = None
        self.update()

    def controls(self) -> list[widgets.Widget]:
        return [self.frame_slider, self.metric_buttons]

    def score_at(self, name: Any, t: int) -> float:
        """The selected metric of ``name`` at video frame t (NaN where the frame is not scored)."""
        frames, values = per_frame_curve(self.per_frame[name], self.metric_buttons.value, name=f"per_frame[{name!r}]")
        hits = np.flatnonzero(frames == t)
        return float(values[hits[0]]) if hits.size else float("nan")

    def on_click(self, event: MouseEvent) -> None:
        if not self.is_pick(event, self.curve_ax):
            return
        self.frame_slider.value = int(np.clip(round(event.xdata), 0, self.frame_slider.max))  # redraws via observe

    def update(self) -> None:
        t, metric = self.frame_slider.value, self.metric_buttons.value
        self.fig.clear()
        panel_names = list(self.masks_by_name) + (["ground truth"] if self.gt_masks is not None else [])
        grid = self.fig.add_gridspec(2, max(len(panel_names), 1), height_ratios=(1.0, 1.3))
        self.curve_ax = self.fig.add_subplot(grid[0, :])
        plot_jf_curves(self.per_frame, metric=metric, highlight_frame=t, ax=self.curve_ax,
                       title=f"per-frame {metric} (click a frame)")
        for column, name in enumerate(panel_names):
            ax = self.fig.add_subplot(grid[1, column])
            if name in self.masks_by_name:
                score = self.score_at(name, t) if name in self.per_frame else float("nan")
                label = f"{name}: {metric} {100 * score:.1f}" if not np.isnan(score) else str(name)   # percent
                draw_overlay(ax, self.frames[t], self.masks_by_name[name][t], alpha=self.alpha, title=label,
                             style=self.style)
            else:
                draw_overlay(ax, self.frames[t], self.gt_masks[t], alpha=self.alpha, title="ground truth",
                             style=self.style)
        if not panel_names:
            draw_overlay(self.fig.add_subplot(grid[1, 0]), self.frames[t], title=f"frame {t}")
        self.fig.suptitle(f"frame {t}", fontsize=13)
        self._refresh()


def _new_canvas_figure(figsize: tuple[float, float]) -> Figure:
    """A Figure outside pyplot: a clickable ipympl canvas in a Jupyter kernel (see :func:`clickable_canvas`), else
    an Agg canvas whose renders go into an Output widget (the sliders then do everything)."""
    figure = Figure(figsize=figsize, layout="constrained")
    if clickable_canvas():
        Canvas, FigureManager = _ipympl_classes()
        # What plt.figure() builds under %matplotlib widget, minus pyplot's registry: the canvas widget together with
        # its manager and Toolbar widget. (Canvas.new_manager would give a plain WebAgg manager without a toolbar
        # widget, and ipympl's front end then fails with "Cannot read properties of null (reading 'state_change')".)
        FigureManager(Canvas(figure), 0)
    else:
        FigureCanvasAgg(figure)
    return figure


def _ipympl_classes():
    """ipympl's Canvas and FigureManager, imported without touching the notebook's ``%matplotlib`` choice.

    Importing ipympl calls ``matplotlib.use("module://ipympl.backend_nbagg")`` when matplotlib is loaded; the
    explorers only need the classes, so the backend the notebook chose (inline, say) is put back.
    """
    raw = getattr(matplotlib.rcParams, "_get", lambda key: dict.__getitem__(matplotlib.rcParams, key))
    before = raw("backend")
    from ipympl.backend_nbagg import Canvas, FigureManager
    if raw("backend") != before:
        if isinstance(before, str):
            matplotlib.use(before)
        else:                                               # matplotlib's "not chosen yet" sentinel
            dict.__setitem__(matplotlib.rcParams, "backend", before)
    return Canvas, FigureManager


def clickable_canvas() -> bool:
    """True when explorers draw on an ipympl canvas (clicks pick pixels / frames), False for the slider-only path.

    ipympl canvases are used in any Jupyter kernel where ipympl is installed (the ``notebooks`` extra ships it with
    its JupyterLab extension), whatever the ``%matplotlib`` backend: the explorers' figures are their own widgets,
    not pyplot figures. ``ISVOS_LITE_EXPLORER=sliders`` forces the slider-only path (a front end without the
    ipympl extension shows "Error displaying widget" instead of a figure).
    """
    choice = os.environ.get(EXPLORER_ENV, "auto").strip().lower()
    if choice not in ("auto", "click", "sliders"):
        raise ValueError(f"{EXPLORER_ENV}={choice!r}: use 'auto' (default), 'click' (ipympl) or 'sliders'")
    if choice == "sliders":
        return False
    if importlib.util.find_spec("ipympl") is None:         # find, not import: importing ipympl switches the backend
        if choice == "click":
            raise ValueError(f"{EXPLORER_ENV}=click needs ipympl: pip install ipympl (the 'notebooks' extra)")
        return False
    if choice == "click" or matplotlib.get_backend() in ("widget", "ipympl", "module://ipympl.backend_nbagg"):
        return True
    return _in_kernel()


def _in_kernel() -> bool:
    """True inside a Jupyter kernel (a front end that can show widgets), False in a plain Python or IPython shell."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _in_ipython() -> bool:
    """True inside an IPython kernel or shell (where display() renders rather than prints)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return get_ipython() is not None
