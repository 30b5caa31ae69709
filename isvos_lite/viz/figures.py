"""Figure plumbing shared by every plot: creating panel grids, image axes, atomic saving.

Static plotting functions build a plain ``matplotlib.figure.Figure`` (not registered with pyplot):
it works under any backend including Agg, never piles up in pyplot's figure list, and a notebook
shows it exactly once when it is the last expression of a cell (use :func:`save_figure` in
scripts). Widgets need pyplot's figure manager for the ipympl canvas and create their own.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from isvos_lite.atomic import atomic_path

__all__ = ["new_figure", "grid_shape", "style_image_axes", "save_figure"]


def grid_shape(num_panels: int, ncols: int) -> tuple[int, int]:
    """(rows, cols) of a grid holding ``num_panels`` panels with at most ``ncols`` per row."""
    if num_panels < 1:
        raise ValueError(f"need at least one panel, got {num_panels}")
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    cols = min(ncols, num_panels)
    return math.ceil(num_panels / cols), cols


def new_figure(nrows: int, ncols: int, panel_size: tuple[float, float] = (3.2, 3.0),
               figure: Figure | None = None) -> tuple[Figure, np.ndarray]:
    """A figure with an (nrows, ncols) array of axes and constrained layout (room for colour bars).

    With ``figure`` given (a widget's persistent figure), that figure is cleared and reused.
    """
    if figure is None:
        figure = Figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows), layout="constrained")
    else:
        figure.clear()
        figure.set_layout_engine("constrained")
    axes = figure.subplots(nrows, ncols, squeeze=False)  # (nrows, ncols) array of Axes
    return figure, axes


def style_image_axes(ax: Axes, title: str | None = None) -> None:
    """Image panels have no ticks; titles follow the course grammar ("frame t", "memory frame t")."""
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=12)        # readable when a wide figure is scaled to the notebook or projected


def save_figure(figure: Figure, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Save ``figure`` to ``path`` (format from the suffix) atomically: temp file + os.replace.

    A crash mid-write never leaves a truncated image where a previous good one was.
    """
    path = Path(path)
    if not path.suffix:
        raise ValueError(f"save_figure: {path} has no suffix; use e.g. .png, .pdf or .svg")
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".").lower())
    return path
