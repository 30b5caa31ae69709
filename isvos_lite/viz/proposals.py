"""Figures of the instance branch's object proposals (:mod:`isvos_lite.proposals`), numbered by rank.

Proposal ``r`` wears the colour of palette row ``r`` (the course's one colour grammar) and its number is written at
the point of its visible part farthest from that part's boundary; clicks are drawn as white crosses.
"""

from __future__ import annotations

from typing import Any, Sequence

import cv2
import numpy as np
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from isvos_lite.viz.figures import grid_shape, new_figure
from isvos_lite.viz.overlays import draw_overlay

__all__ = ["draw_proposals", "plot_proposals", "label_point"]

_OUTLINE = [patheffects.withStroke(linewidth=3, foreground="black")]


def label_point(mask: np.ndarray) -> tuple[int, int] | None:
    """(x, y) of the pixel of ``mask`` farthest from its boundary, or None for an empty mask."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        return None
    distance = cv2.distanceTransform(np.pad(mask, 1).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]
    y, x = np.unravel_index(int(distance.argmax()), distance.shape)
    return int(x), int(y)


def draw_proposals(ax: Axes, frame: Any, proposals, clicks: Sequence[tuple[float, float]] = (),
                   title: str | None = None, fontsize: float = 11) -> None:
    """Draw ``frame`` with every proposal in its rank's colour (better ranks on top) and its number; ``clicks`` as
    crosses."""
    ids = proposals.id_mask()
    draw_overlay(ax, frame, ids, title=title)
    for proposal in proposals:
        point = label_point(ids == proposal.rank) or proposal.inside_point   # hidden under better ones: its own centre
        ax.text(point[0], point[1], str(proposal.rank), color="white", fontsize=fontsize, fontweight="bold",
                ha="center", va="center", path_effects=_OUTLINE)
    for x, y in clicks:
        ax.plot([x], [y], marker="+", markersize=14, markeredgewidth=2.5, color="white",
                path_effects=[patheffects.withStroke(linewidth=4.5, foreground="black")])


def plot_proposals(frame: Any, proposals, clicks: Sequence[tuple[float, float]] = (), ncols: int = 4,
                   panel_size: float = 3.0, title: str | None = None, figure: Figure | None = None) -> Figure:
    """One panel with all proposals numbered, then one panel per proposal alone, titled "r: score"."""
    height, width = proposals.size
    rows, cols = grid_shape(1 + len(proposals), ncols)
    figure, axes = new_figure(rows, cols, panel_size=(panel_size, panel_size * height / width + 0.45), figure=figure)
    axes = axes.ravel()
    draw_proposals(axes[0], frame, proposals, clicks, title=f"{len(proposals)} proposals (by rank)")
    for ax, proposal in zip(axes[1:], proposals):
        alone = np.where(proposal.mask, proposal.rank, 0).astype(np.uint8)
        draw_overlay(ax, frame, alone, title=f"{proposal.rank}: score {proposal.score:.2f}")
    for ax in axes[1 + len(proposals):]:
        ax.set_visible(False)
    if title:
        figure.suptitle(title, fontsize=13)
    return figure
