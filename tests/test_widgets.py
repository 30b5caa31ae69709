"""Headless tests of the explorers' callbacks: set `.value` or replay a click, then look at the figure.

No browser and no kernel: ipywidgets fire `observe` callbacks in plain Python, and an ipympl click is
reproduced with a synthetic matplotlib MouseEvent on the Agg canvas.
"""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib.backend_bases import MouseEvent

from isvos_lite.viz import AffinityExplorer, JFCurveExplorer, ReadoutExplorer, VideoBrowser, overlay_mask

T, H, W = 4, 32, 48


@pytest.fixture
def video():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(T, H, W, 3), dtype=np.uint8)
    masks = np.zeros((T, H, W), dtype=np.int64)
    for t in range(T):
        masks[t, 4:12, 2 + 6 * t:14 + 6 * t] = 1
        masks[t, 18:28, 30:44] = 2
    return frames, masks


def click(figure, ax, x, y, button=1):
    """Replay a click at data coordinates (x, y) of ``ax``, as ipympl would deliver it."""
    figure.canvas.draw()                                  # fixes the data -> display transform
    px, py = ax.transData.transform((x, y))
    event = MouseEvent("button_press_event", figure.canvas, px, py, button=button)
    figure.canvas.callbacks.process("button_press_event", event)


def image_data(ax, index=0):
    return np.array(ax.get_images()[index].get_array())


# --- VideoBrowser --------------------------------------------------------------------------

def test_video_browser_slider_changes_the_shown_frame(video):
    frames, masks = video
    browser = VideoBrowser(frames, masks)
    before = image_data(browser.fig.axes[0])
    np.testing.assert_array_equal(before, overlay_mask(frames[0], masks[0]))
    browser.frame_slider.value = 2
    np.testing.assert_array_equal(image_data(browser.fig.axes[0]), overlay_mask(frames[2], masks[2]))
    assert browser.fig.axes[0].get_title() == "frame 2" and browser.draw_count == 2


def test_video_browser_object_toggle_hides_that_object(video):
    frames, masks = video
    browser = VideoBrowser(frames, masks, gt_masks=masks)
    assert list(browser.object_toggles) == [1, 2]
    browser.object_toggles[1].value = False
    prediction = image_data(browser.fig.axes[0])
    np.testing.assert_array_equal(prediction[masks[0] == 1], frames[0][masks[0] == 1])   # object 1 unpainted
    np.testing.assert_array_equal(prediction, overlay_mask(frames[0], masks[0], object_ids=[2]))
    assert browser.fig.axes[2].get_title().startswith("errors: 0 px")


def test_video_browser_shows_errors_against_ground_truth(video):
    frames, masks = video
    predictions = masks.copy()
    predictions[3][masks[3] == 2] = 0                       # object 2 missed on frame 3
    browser = VideoBrowser(frames, predictions, gt_masks=masks)
    browser.frame_slider.value = 3
    assert browser.fig.axes[2].get_title().startswith(f"errors: {(masks[3] == 2).sum()} px")


def test_video_browser_rejects_mismatched_masks(video):
    frames, masks = video
    with pytest.raises(ValueError, match="pred_masks: has 3 masks but there are 4 frames"):
        VideoBrowser(frames, masks[:3])
    with pytest.raises(ValueError, match=r"gt_masks\[0\]: shape \(32, 40\) does not match"):
        VideoBrowser(frames, masks, gt_masks=masks[:, :, :40])


# --- AffinityExplorer ----------------------------------------------------------------------

class FakeAffinity:
    """affinity_for stand-in: a peak at the memory cell under the query pixel; records its calls."""

    def __init__(self, stride=16):
        self.calls, self.stride = [], stride

    def __call__(self, query_xy, variant):
        self.calls.append((tuple(query_xy), variant))
        rows = np.full((2, H // self.stride, W // self.stride), 0.01)
        x, y = query_xy
        rows[0, y // self.stride, x // self.stride] = 1.0 if variant == "with query enhancement" else 0.5
        return rows, 1


def test_affinity_explorer_sliders_recompute_and_redraw(video):
    frames, _ = video
    affinity = FakeAffinity()
    explorer = AffinityExplorer(affinity, frames[:2], frames[2], query_xy=(5, 5))
    heat_before = image_data(explorer.panels.memory_axes[0], 1)
    explorer.x_slider.value = 40
    assert affinity.calls[-1] == ((40, 5), "with query enhancement")
    heat_after = image_data(explorer.panels.memory_axes[0], 1)
    assert heat_before[0, 0] == 1.0 and heat_after[0, 2] == 1.0 and not np.array_equal(heat_before, heat_after)
    assert explorer.panels.query_ax.get_title() == "query frame: query (40, 5)"


def test_affinity_explorer_click_picks_the_query_pixel_with_one_redraw(video):
    frames, _ = video
    affinity = FakeAffinity()
    explorer = AffinityExplorer(affinity, frames[:2], frames[2], memory_indices=[0, 1], query_index=2)
    calls_before = len(affinity.calls)
    click(explorer.fig, explorer.panels.query_ax, 37, 21)
    assert explorer.query_xy == (37, 21)
    assert affinity.calls[calls_before:] == [((37, 21), "with query enhancement")]   # exactly one recompute
    star = [c for c in explorer.panels.query_ax.collections if c.get_gid() == "query_pixel"][0]
    np.testing.assert_allclose(star.get_offsets(), [[37, 21]])
    click(explorer.fig, explorer.panels.memory_axes[0], 3, 3)                        # not the query frame: ignored
    click(explorer.fig, explorer.panels.query_ax, 3, 3, button=3)                     # right click: ignored
    assert explorer.query_xy == (37, 21) and len(affinity.calls) == calls_before + 1


def test_affinity_explorer_variant_toggle_and_top_k(video):
    frames, _ = video
    affinity = FakeAffinity()
    explorer = AffinityExplorer(affinity, frames[:2], frames[2], query_xy=(20, 20))
    explorer.variant_buttons.value = "without query enhancement"
    assert affinity.calls[-1][1] == "without query enhancement"
    assert explorer.panels.colorbar.vmax == pytest.approx(1.0)     # fixed by default: the weights are probabilities
    explorer.color_scale_buttons.value = "per click"
    assert explorer.panels.colorbar.vmax == pytest.approx(0.5)                   # limits follow the data
    marked = [c for ax in explorer.panels.memory_axes for c in ax.collections if c.get_gid() == "top_k"]
    assert sum(len(c.get_offsets()) for c in marked) == 1


@pytest.mark.parametrize("scale", ["linear", "log"])
def test_affinity_explorer_fixed_colour_scale_does_not_re_range_per_click(video, scale):
    frames, _ = video
    explorer = AffinityExplorer(FakeAffinity(), frames[:2], frames[2], query_xy=(20, 20), scale=scale)
    limits = []
    for variant in ("with query enhancement", "without query enhancement"):    # peaks of 1.0 and 0.5
        explorer.variant_buttons.value = variant
        heat = explorer.panels.heat_images[0]
        limits.append((heat.norm.vmin, heat.norm.vmax))
    assert limits[0] == limits[1] == ((0.0, 1.0) if scale == "linear" else (1e-6, 1.0))
    explorer.color_scale_buttons.value = "per click"
    assert explorer.panels.heat_images[0].norm.vmax == pytest.approx(0.5)
    with pytest.raises(ValueError, match="color_scale"):
        AffinityExplorer(FakeAffinity(), frames[:2], frames[2], color_scale="sometimes")


def test_affinity_explorer_outlines_the_target_on_every_panel(video):
    frames, masks = video
    explorer = AffinityExplorer(FakeAffinity(), frames[:2], frames[2], memory_masks=masks[:2], query_mask=masks[2],
                                outline_ids=[1])
    axes = explorer.panels.memory_axes + [explorer.panels.query_ax]
    for ax in axes:
        outlines = [c for c in ax.collections if c.get_gid() == "outline:1"]
        assert len(outlines) == 1 and not any(c.get_gid() == "outline:2" for c in ax.collections)
    explorer.select(30, 10)                                                       # a click keeps the outlines
    assert all(any(c.get_gid() == "outline:1" for c in ax.collections)
               for ax in explorer.panels.memory_axes + [explorer.panels.query_ax])
    with pytest.raises(ValueError, match="memory_masks: got 1 masks for 2 memory frames"):
        AffinityExplorer(FakeAffinity(), frames[:2], frames[2], memory_masks=masks[:1])


def test_affinity_explorer_reports_a_bad_affinity_function(video):
    frames, _ = video
    with pytest.raises(ValueError, match="affinity_rows: has 3 maps but memory_frames has 2"):
        AffinityExplorer(lambda xy, variant: (np.ones((3, 2, 3)), None), frames[:2], frames[2])
    with pytest.raises(ValueError, match="affinity_for: expected a function"):
        AffinityExplorer(np.ones((2, 2, 3)), frames[:2], frames[2])


# --- ReadoutExplorer -----------------------------------------------------------------------

def test_readout_explorer_keeps_colours_fixed_over_the_video(video):
    frames, masks = video
    rng = np.random.default_rng(1)
    maps = [rng.normal(size=(8, 2, 3)) for _ in range(T)]
    maps[3] = maps[1].copy()                                 # the same features on frames 1 and 3
    explorer = ReadoutExplorer(frames, {"readout": maps}, masks=masks)
    explorer.frame_slider.value = 1
    colours_1 = image_data(explorer.fig.axes[1])
    explorer.frame_slider.value = 3
    np.testing.assert_array_equal(image_data(explorer.fig.axes[1]), colours_1)   # same feature -> same colour
    explorer.frame_slider.value = 2
    assert not np.array_equal(image_data(explorer.fig.axes[1]), colours_1)
    assert explorer.fig.axes[0].get_title() == "frame 2"


def test_readout_explorer_basis_and_mask_toggles_change_the_figure(video):
    frames, masks = video
    rng = np.random.default_rng(2)
    explorer = ReadoutExplorer(frames, {"readout": [rng.normal(size=(8, 2, 3)) * (t + 1) for t in range(T)]}, masks)
    fixed = image_data(explorer.fig.axes[1])
    explorer.basis_buttons.value = "refit per frame"
    assert not np.allclose(image_data(explorer.fig.axes[1]), fixed)
    explorer.mask_checkbox.value = False
    np.testing.assert_array_equal(image_data(explorer.fig.axes[0]), frames[0])


def test_readout_explorer_click_shows_similarity_to_the_picked_position(video):
    frames, masks = video
    maps = [np.zeros((2, 4, 6)) for _ in range(T)]           # a 4x6 grid over 32x48 frames: 8x8 pixel cells
    for m in maps:
        m[0] = 1.0                                           # every cell points along channel 0 ...
        m[:, 0, 0] = (0.0, 1.0)                              # ... except the top-left cell (orthogonal)
        m[:, 3, 5] = (-1.0, 0.0)                             # ... and the bottom-right one (opposite)
    explorer = ReadoutExplorer(frames, {"readout": maps}, masks=masks)
    pca = image_data(explorer.fig.axes[1])
    click(explorer.fig, explorer.fig.axes[0], 20.0, 12.0)  # a channel-0 cell
    assert explorer.view_buttons.value == "similarity to the picked position"
    assert explorer.picked_xy == pytest.approx((20.0, 12.0))
    similarity = image_data(explorer.fig.axes[1])
    assert similarity.shape == (4, 6) and not np.array_equal(similarity, pca)
    assert similarity[1, 2] == pytest.approx(1.0) and similarity[0, 0] == pytest.approx(0.0)
    assert similarity[3, 5] == pytest.approx(-1.0)
    click(explorer.fig, explorer.fig.axes[1], 2.0, 2.0)    # the top-left cell, on the feature panel
    np.testing.assert_allclose(explorer.similarity_map("readout", 0, explorer.picked_xy)[0, 0], 1.0)
    explorer.view_buttons.value = "PCA colours"
    np.testing.assert_array_equal(image_data(explorer.fig.axes[1]), pca)
    click(explorer.fig, explorer.fig.axes[0], 20.0, 12.0, button=3)      # right click: nothing
    assert explorer.view_buttons.value == "PCA colours"


def test_readout_explorer_needs_one_map_per_frame(video):
    frames, _ = video
    with pytest.raises(ValueError, match=r"features_by_name\['readout'\]: has 2 maps for 4 frames"):
        ReadoutExplorer(frames, {"readout": [np.zeros((4, 2, 2))] * 2})


# --- JFCurveExplorer -----------------------------------------------------------------------

@pytest.fixture
def scores():
    return {"vanilla": {"J": [0.9, 0.8, 0.3], "F": [0.9, 0.6, 0.1], "frames": [1, 2, 3]},
            "ISVOS": {"J": [0.9, 0.9, 0.8], "F": [0.9, 0.9, 0.8], "frames": [1, 2, 3]}}


def test_jf_curve_explorer_click_on_curve_shows_that_frame(video, scores):
    frames, masks = video
    explorer = JFCurveExplorer(scores, frames, masks_by_name={"vanilla": masks, "ISVOS": masks}, gt_masks=masks)
    click(explorer.fig, explorer.curve_ax, 2.8, 0.5)
    assert explorer.frame_slider.value == 3
    current = [line for line in explorer.curve_ax.get_lines() if line.get_gid() == "current_frame"][0]
    assert list(current.get_xdata()) == [3, 3]
    vanilla_ax = explorer.fig.axes[1]
    assert vanilla_ax.get_title() == "vanilla: J&F 20.0"                  # percent, as the paper
    np.testing.assert_array_equal(image_data(vanilla_ax), overlay_mask(frames[3], masks[3]))


def test_jf_curve_explorer_slider_and_metric(video, scores):
    frames, masks = video
    explorer = JFCurveExplorer(scores, frames, masks)                              # one mask set -> "prediction"
    explorer.frame_slider.value = 1
    assert explorer.fig.axes[1].get_title() == "prediction"
    np.testing.assert_array_equal(image_data(explorer.fig.axes[1]), overlay_mask(frames[1], masks[1]))
    explorer.metric_buttons.value = "F"
    vanilla = [line for line in explorer.curve_ax.get_lines() if line.get_gid() == "curve:vanilla"][0]
    np.testing.assert_allclose(vanilla.get_ydata(), [90.0, 60.0, 10.0])
    assert explorer.score_at("vanilla", 2) == pytest.approx(0.6) and np.isnan(explorer.score_at("vanilla", 0))


def test_jf_curve_explorer_rejects_frames_outside_the_video(video):
    frames, _ = video
    with pytest.raises(ValueError, match=r"frame numbers 1..9 fall outside the video's frames 0..3"):
        JFCurveExplorer({"m": {"J&F": [0.5, 0.5], "frames": [1, 9]}}, frames)


def test_explorer_widget_layout_holds_controls_and_view(video):
    frames, masks = video
    browser = VideoBrowser(frames, masks)
    box = browser.widget
    assert browser.frame_slider in box.children[0].children and box.children[1] is browser.view


def test_explorer_figures_stay_out_of_pyplot(video):
    """A later plt.plot in the notebook must not draw into an explorer's figure."""
    import matplotlib.pyplot as plt
    frames, masks = video
    figures_before = plt.get_fignums()
    browser = VideoBrowser(frames, masks)
    assert plt.get_fignums() == figures_before
    assert browser.fig not in [plt.figure(n) for n in plt.get_fignums()]
