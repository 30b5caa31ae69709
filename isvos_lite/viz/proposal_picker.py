"""Pick an object to follow by clicking it: the explorer over :mod:`isvos_lite.proposals`.

Left, the frame with the instance branch's numbered proposals and the click; right, what the click picks (the
best-scored proposal containing the pixel) or, on background, the refusal with the nearest proposal. As the other
explorers (:mod:`isvos_lite.viz.widgets`): a click on the ipympl canvas moves the point, the x / y sliders follow and
drive it where clicking is not available; ``picker.picks`` is the first mask for ``VideoSegmenter.step``.
"""

from __future__ import annotations

import textwrap
from typing import Any

import ipywidgets as widgets
import numpy as np
from matplotlib.backend_bases import MouseEvent

from isvos_lite.proposals import NoProposalAtClick, Picks, Proposals, pick_by_clicks
from isvos_lite.viz.arrays import as_frame
from isvos_lite.viz.overlays import draw_overlay
from isvos_lite.viz.proposals import draw_proposals
from isvos_lite.viz.widgets import FigureExplorer

__all__ = ["ProposalPicker"]


class ProposalPicker(FigureExplorer):
    """Click an object of ``frame`` (or move the sliders): the proposal under the point becomes object 1."""

    def __init__(self, frame: Any, proposals: Proposals, point: tuple[int, int] | None = None,
                 panel_size: float = 4.2):
        if not isinstance(proposals, Proposals):
            raise ValueError(f"proposals: expected what isvos_lite.proposals.propose returns, got {type(proposals).__name__}")
        self.frame = as_frame(frame, "frame")
        if self.frame.shape[:2] != proposals.size:
            raise ValueError(f"frame is {self.frame.shape[1]}x{self.frame.shape[0]} but the proposals were made on a "
                             f"{proposals.size[1]}x{proposals.size[0]} frame")
        self.proposals = proposals
        height, width = proposals.size
        if point is None:
            point = proposals[0].inside_point if len(proposals) else (width // 2, height // 2)
        super().__init__(figsize=(2 * panel_size, panel_size * height / width + 0.9))
        self.x_slider = widgets.IntSlider(value=int(point[0]), min=0, max=width - 1, description="click x",
                                          continuous_update=False)
        self.y_slider = widgets.IntSlider(value=int(point[1]), min=0, max=height - 1, description="click y",
                                          continuous_update=False)
        for slider in (self.x_slider, self.y_slider):
            slider.observe(self.on_change, names="value")
        self.frame_ax = None
        self.update()

    def controls(self) -> list[widgets.Widget]:
        return [self.x_slider, self.y_slider]

    @property
    def point(self) -> tuple[int, int]:
        return self.x_slider.value, self.y_slider.value

    @property
    def picks(self) -> Picks:
        """The pick of the current point (object 1); raises :class:`NoProposalAtClick` on background."""
        return pick_by_clicks(self.proposals, [self.point])

    def select(self, x: int, y: int) -> None:
        """Move the click to (x, y) with one redraw."""
        self.set_together((self.x_slider, int(np.clip(x, 0, self.x_slider.max))),
                          (self.y_slider, int(np.clip(y, 0, self.y_slider.max))))

    def on_click(self, event: MouseEvent) -> None:
        if self.is_pick(event, self.frame_ax):
            self.select(int(round(event.xdata)), int(round(event.ydata)))

    def update(self) -> None:
        self.fig.clear()
        self.frame_ax, picked_ax = self.fig.subplots(1, 2)
        draw_proposals(self.frame_ax, self.frame, self.proposals, clicks=[self.point],
                       title=f"{len(self.proposals)} proposals: click an object")
        try:
            pick = self.picks[0]
        except NoProposalAtClick as refusal:
            draw_overlay(picked_ax, self.frame, title="nothing picked")
            picked_ax.text(0.5, 0.5, "\n".join(textwrap.wrap(str(refusal), 42)), transform=picked_ax.transAxes,
                           ha="center", va="center", fontsize=9, color="black",
                           bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "none"})
        else:
            p = pick.proposal
            draw_overlay(picked_ax, self.frame, p.mask.astype(np.uint8),
                         title=f"object 1 = proposal {p.rank} (score {p.score:.2f})")
        self._refresh()
