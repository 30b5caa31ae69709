"""Visualisation for the course: one visual grammar for every notebook.

Static functions take numpy arrays or torch tensors (never model objects) and return a
matplotlib Figure; the explorers in :mod:`isvos_lite.viz.widgets` are ipywidgets shells over them.

- colours: :func:`object_color` - object k is row k of one palette everywhere (the contrast palette by default,
  :func:`set_object_palette` ``("davis")`` for the mask files' colours).
- overlays: :func:`overlay_mask` (outline or fill), :func:`show_frames`, :func:`compare_masks` (paper Fig. 1, 5, 6).
- prediction beside ground truth with per-frame J&F: :func:`show_prediction_and_truth`, :func:`side_by_side_frame`.
- affinity: :func:`plot_affinity`, :func:`top_k_positions` (Eq. 3, top-k reading of §4.1).
- readout: :func:`readout_pca_rgb`, :func:`plot_readout_features` (Fig. 8).
- curves: :func:`plot_jf_curves` (Fig. 1), :func:`plot_memory_tradeoff` (Fig. 7), :func:`plot_loss_curves`.
- widgets: :class:`VideoBrowser`, :class:`AffinityExplorer`, :class:`ReadoutExplorer`, :class:`JFCurveExplorer`.
- checks: :func:`figure_problems` - data outside the axes, empty axes, text too small to read projected.
"""

from isvos_lite.viz.affinity import (AffinityPanels, draw_affinity, draw_outlines, fixed_color_range, grid_extent,
                                    plot_affinity, top_k_positions)
from isvos_lite.viz.arrays import as_frame, as_frames, as_mask, as_masks, to_numpy
from isvos_lite.viz.colors import (CONTRAST_PALETTE, DAVIS_PALETTE, ERROR_COLORS, colorize_ids, object_color,
                                   object_color_hex, object_legend_handles, object_palette, set_object_palette)
from isvos_lite.viz.curves import (load_metrics_log, per_frame_curve, plot_jf_curves, plot_loss_curves,
                                   plot_memory_tradeoff, smooth_ema)
from isvos_lite.viz.comparison import error_shares, frame_jf, show_prediction_and_truth, side_by_side_frame
from isvos_lite.viz.figure_check import assert_figure_ok, figure_problems
from isvos_lite.viz.figures import new_figure, save_figure
from isvos_lite.viz.overlays import (OVERLAY_STYLES, compare_masks, draw_comparison, draw_overlay, error_map,
                                     error_overlay, mask_boundary, mask_ious, outline_width, overlay_mask, show_frames)
from isvos_lite.viz.readout import PCABasis, plot_readout_features, readout_pca_rgb, shared_bases

# The explorers need ipywidgets (the "notebooks" extra), so they are imported on first use:
# `from isvos_lite.viz import AffinityExplorer` works, and plain plotting needs only matplotlib.
WIDGET_CLASSES = ("AffinityExplorer", "JFCurveExplorer", "ReadoutExplorer", "VideoBrowser")


def __getattr__(name: str):
    if name in WIDGET_CLASSES:
        from isvos_lite.viz import widgets
        return getattr(widgets, name)
    raise AttributeError(f"module 'isvos_lite.viz' has no attribute {name!r}")

__all__ = [
    "AffinityPanels", "draw_affinity", "draw_outlines", "fixed_color_range", "grid_extent", "plot_affinity",
    "top_k_positions",
    "as_frame", "as_frames", "as_mask", "as_masks", "to_numpy",
    "CONTRAST_PALETTE", "DAVIS_PALETTE", "ERROR_COLORS", "colorize_ids", "object_color", "object_color_hex",
    "object_legend_handles", "object_palette", "set_object_palette", "assert_figure_ok", "figure_problems",
    "load_metrics_log", "per_frame_curve", "plot_jf_curves", "plot_loss_curves", "plot_memory_tradeoff", "smooth_ema",
    "error_shares", "frame_jf", "show_prediction_and_truth", "side_by_side_frame",
    "new_figure", "save_figure",
    "OVERLAY_STYLES", "compare_masks", "draw_comparison", "draw_overlay", "error_map", "error_overlay", "mask_boundary",
    "mask_ious", "outline_width", "overlay_mask", "show_frames",
    "PCABasis", "plot_readout_features", "readout_pca_rgb", "shared_bases",
    "AffinityExplorer", "JFCurveExplorer", "ReadoutExplorer", "VideoBrowser",
]
