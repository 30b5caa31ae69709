"""The explorers on an ipympl canvas (what JupyterLab shows): a real Toolbar widget, clicks, the backend left alone."""

import importlib.util

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.backend_bases import MouseEvent

if importlib.util.find_spec("ipympl") is None:      # find, not import: importing ipympl switches matplotlib's backend
    pytest.skip("ipympl is not installed (the 'notebooks' extra)", allow_module_level=True)
# ipympl 0.10 with recent traitlets: a deprecation inside ipympl's own Toolbar.__init__, not ours
pytestmark = pytest.mark.filterwarnings("ignore:Passing unrecognized arguments to super\\(Toolbar\\)")


@pytest.fixture
def click_mode(monkeypatch):
    monkeypatch.setenv("ISVOS_LITE_EXPLORER", "click")


def test_explorer_canvas_has_its_toolbar_widget_and_keeps_the_backend(click_mode):
    from isvos_lite.viz import AffinityExplorer
    backend = matplotlib.get_backend()
    frames = [np.zeros((64, 96, 3), np.uint8)] * 2
    explorer = AffinityExplorer(lambda xy, variant: (torch.rand(2, 4, 6), 5), frames, frames[0], variants=None)
    assert matplotlib.get_backend() == backend                  # importing ipympl did not switch the backend
    from ipympl.backend_nbagg import Canvas, Toolbar
    assert isinstance(explorer.fig.canvas, Canvas) and explorer.view is explorer.fig.canvas
    # ipympl's front end reads canvas.toolbar: None there is the "reading 'state_change'" error box
    assert isinstance(explorer.fig.canvas.toolbar, Toolbar)

    explorer.fig.canvas.draw()
    px, py = explorer.panels.query_ax.transData.transform((50, 30))
    explorer.fig.canvas.callbacks.process("button_press_event",
                                          MouseEvent("button_press_event", explorer.fig.canvas, px, py, button=1))
    assert explorer.query_xy == (50, 30) and explorer.draw_count == 2


def test_explorer_mode_is_checked(monkeypatch):
    from isvos_lite.viz.widgets import clickable_canvas
    monkeypatch.setenv("ISVOS_LITE_EXPLORER", "sliders")
    assert clickable_canvas() is False
    monkeypatch.setenv("ISVOS_LITE_EXPLORER", "mouse")
    with pytest.raises(ValueError, match="ISVOS_LITE_EXPLORER='mouse'"):
        clickable_canvas()
    monkeypatch.delenv("ISVOS_LITE_EXPLORER")
    assert clickable_canvas() is False                           # pytest is no Jupyter kernel: sliders


def test_readout_explorer_labels_video_frames_when_the_list_starts_later(monkeypatch):
    # notebook 08: readouts exist from frame 1 on; entry i is video frame i + 1 and must be titled so
    monkeypatch.setenv("ISVOS_LITE_EXPLORER", "sliders")
    from isvos_lite.viz import ReadoutExplorer
    rng = np.random.default_rng(0)
    frames = [np.full((16, 24, 3), 40 * i, np.uint8) for i in range(3)]           # video frames 1, 2, 3
    explorer = ReadoutExplorer(frames, {"readout": [rng.normal(size=(4, 2, 3)) for _ in range(3)]}, first_frame=1)
    assert (explorer.frame_slider.min, explorer.frame_slider.max) == (1, 3)
    assert explorer.fig.axes[0].get_title() == "frame 1"
    explorer.frame_slider.value = 3
    assert explorer.fig.axes[0].get_title() == "frame 3"
    assert np.array_equal(explorer.fig.axes[0].get_images()[0].get_array()[..., :3], frames[2])
