"""Static plotting functions of isvos_lite.viz: known answers, invariants and clear errors (headless)."""

import json

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from isvos_lite.data.palette import DAVIS_PALETTE
from isvos_lite.viz.colors import CONTRAST_PALETTE, ERROR_COLORS
from isvos_lite.viz import (PCABasis, compare_masks, error_map, load_metrics_log, mask_boundary, mask_ious,
                            outline_width, set_object_palette,
                            object_color, overlay_mask, per_frame_curve, plot_affinity, plot_jf_curves,
                            grid_extent, plot_loss_curves, plot_memory_tradeoff, plot_readout_features, readout_pca_rgb,
                            save_figure, show_frames, smooth_ema, top_k_positions)


@pytest.fixture
def scene():
    """A 20x30 frame with object 1 (a 6x8 box) and object 3 (a 5x5 box)."""
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    mask = np.zeros((20, 30), dtype=np.int64)
    mask[2:8, 3:11] = 1
    mask[10:15, 20:25] = 3
    return frame, mask


# --- colours and overlays -----------------------------------------------------------------

def test_object_color_is_the_palette_row():
    assert np.allclose(object_color(1, "davis") * 255, [128, 0, 0])
    assert np.allclose(object_color(7, "davis") * 255, DAVIS_PALETTE[7])
    assert np.allclose(object_color(1) * 255, CONTRAST_PALETTE[1])          # the default: the contrast palette
    assert np.allclose(object_color(12) * 255, DAVIS_PALETTE[12])            # past its 8 colours, DAVIS again
    with pytest.raises(ValueError, match="object_id"):
        object_color(256)
    with pytest.raises(ValueError, match="palette"):
        object_color(1, "rainbow")


def test_set_object_palette_switches_every_drawing_back_and_forth(scene):
    frame, mask = scene
    previous = set_object_palette("davis")
    try:
        assert np.allclose(object_color(1) * 255, [128, 0, 0])
        davis = overlay_mask(frame, mask)
    finally:
        assert set_object_palette(previous) == "davis"
    np.testing.assert_array_equal(davis, overlay_mask(frame, mask, palette="davis"))
    assert not np.array_equal(davis, overlay_mask(frame, mask))


def test_contrast_palette_keeps_objects_apart_from_red_scenes_and_errors():
    # the look-alike scenes are red: object 1 of the default palette is not (blue channel dominates), unlike DAVIS's
    assert CONTRAST_PALETTE[1][2] > CONTRAST_PALETTE[1][0] and DAVIS_PALETTE[1][0] > DAVIS_PALETTE[1][2]
    first = {tuple(c) for c in CONTRAST_PALETTE[1:9].tolist()}
    assert len(first) == 8 and not first & set(ERROR_COLORS.values()) and (0, 0, 0) not in first


def test_outline_style_draws_a_band_inside_and_a_white_rim_outside(scene):
    frame, mask = scene
    out = overlay_mask(frame, mask, palette="davis", line_width=2)          # the default style: outline
    box = np.zeros_like(mask, dtype=bool)
    box[2:8, 3:11] = True                                                     # object 1
    band = box.copy()
    band[4:6, 5:9] = False                                                    # 2 px inside its border
    np.testing.assert_array_equal(out[band], np.tile(DAVIS_PALETTE[1], (band.sum(), 1)))
    np.testing.assert_array_equal(out[box & ~band], frame[box & ~band])       # the interior stays visible
    assert (out[1, 5] == 255).all() and (out[8, 5] == 255).all() and (out[4, 2] == 255).all()   # the rim, 1 px out
    far = np.ones_like(box)
    far[0:10, 1:13] = False
    far[8:17, 18:27] = False
    np.testing.assert_array_equal(out[far], frame[far])                       # the rest of the frame untouched
    assert outline_width((160, 288)) == 3 and outline_width((480, 854)) == 8 and outline_width((20, 30)) == 2
    with pytest.raises(ValueError, match="style"):
        overlay_mask(frame, mask, style="glow")
    with pytest.raises(ValueError, match="line_width"):
        overlay_mask(frame, mask, line_width=0)


def test_overlay_colours_equal_palette_blended_at_alpha(scene):
    frame, mask = scene
    alpha = 0.6
    out = overlay_mask(frame, mask, alpha=alpha, contour=False, style="fill", palette="davis")
    expected = np.round((1 - alpha) * frame + alpha * DAVIS_PALETTE[mask].astype(float)).astype(np.uint8)
    objects = mask > 0
    np.testing.assert_array_equal(out[objects], expected[objects])
    np.testing.assert_array_equal(out[~objects], frame[~objects])   # background untouched


def test_overlay_contour_has_full_colour_and_interior_is_blended(scene):
    frame, mask = scene
    out = overlay_mask(frame, mask, alpha=0.6, contour=True, style="fill", palette="davis")
    edge = mask_boundary(mask)
    np.testing.assert_array_equal(out[edge], DAVIS_PALETTE[mask[edge]])
    interior = (mask > 0) & ~edge
    blended = np.round(0.4 * frame + 0.6 * DAVIS_PALETTE[mask].astype(float)).astype(np.uint8)
    np.testing.assert_array_equal(out[interior], blended[interior])


def test_mask_boundary_of_a_box_is_its_perimeter():
    mask = np.zeros((10, 10), dtype=int)
    mask[2:7, 3:8] = 2                                  # 5x5 box
    edge = mask_boundary(mask)
    assert edge.sum() == 4 * (5 - 1)
    assert not edge[4, 5] and edge[2, 3] and edge[6, 7]


@pytest.mark.parametrize("style", ["outline", "fill"])
def test_overlay_object_selection_leaves_other_objects_unpainted(scene, style):
    frame, mask = scene
    out = overlay_mask(frame, mask, object_ids=[3], style=style)
    np.testing.assert_array_equal(out[mask == 1], frame[mask == 1])
    assert not np.array_equal(out[mask == 3], frame[mask == 3])


def test_overlay_accepts_torch_channel_first_float_frames(scene):
    frame, mask = scene
    as_tensor = torch.from_numpy(frame).permute(2, 0, 1).float() / 255.0   # (3, H, W) in [0, 1]
    np.testing.assert_array_equal(overlay_mask(as_tensor, torch.from_numpy(mask)), overlay_mask(frame, mask))


def test_overlay_rejects_bad_input(scene):
    frame, mask = scene
    with pytest.raises(ValueError, match=r"mask: shape \(20, 29\) does not match the frame's"):
        overlay_mask(frame, mask[:, :29])
    with pytest.raises(ValueError, match="non-integer"):
        overlay_mask(frame, mask * 0.5)
    with pytest.raises(ValueError, match=r"float pixels must lie in \[0, 1\]"):
        overlay_mask(frame.astype(np.float32), mask)
    with pytest.raises(ValueError, match="alpha"):
        overlay_mask(frame, mask, alpha=1.5)


def test_show_frames_draws_selected_frames_with_titles(scene):
    frame, mask = scene
    frames = np.stack([frame] * 6)
    masks = [mask] * 6
    figure = show_frames(frames, masks, frame_indices=[0, 2, 4], ncols=2)
    assert isinstance(figure, Figure)
    titles = [ax.get_title() for ax in figure.axes if ax.get_images()]
    assert titles == ["frame 0", "frame 2", "frame 4"]
    np.testing.assert_array_equal(figure.axes[0].get_images()[0].get_array(), overlay_mask(frame, mask))
    with pytest.raises(ValueError, match="masks: has 5 masks but there are 6 frames"):
        show_frames(frames, masks[:5])


def test_error_map_and_ious_known_answer():
    gt = np.array([[1, 1, 0, 2],
                   [1, 1, 0, 2]])
    pred = np.array([[1, 0, 0, 1],
                     [1, 1, 2, 2]])
    codes = error_map(pred, gt)
    np.testing.assert_array_equal(codes, [[0, 1, 0, 3],
                                          [0, 0, 2, 0]])
    ious = mask_ious(pred, gt)
    assert ious == pytest.approx({1: 3 / 5, 2: 1 / 3})


def test_compare_masks_has_prediction_gt_and_errors(scene):
    frame, mask = scene
    pred = mask.copy()
    pred[2:8, 3:6] = 0
    figure = compare_masks(frame, pred, mask, frame_index=7)
    assert figure.get_suptitle() == "frame 7"
    assert figure.axes[2].get_title() == "errors: 18 px (3.0%)"
    with pytest.raises(ValueError, match="pred: shape"):
        compare_masks(frame, pred[:10], mask)


# --- affinity -------------------------------------------------------------------------------

def test_top_k_positions_match_a_brute_force_sort():
    rows = np.random.default_rng(1).random((3, 4, 5))
    expected = np.array(np.unravel_index(np.argsort(-rows.reshape(-1))[:7], rows.shape)).T
    np.testing.assert_array_equal(top_k_positions(rows, 7), expected)
    with pytest.raises(ValueError, match="top_k"):
        top_k_positions(rows, 0)


def test_affinity_plot_marks_exactly_top_k_points_at_their_cells():
    rng = np.random.default_rng(2)
    memory = [rng.integers(0, 256, (32, 48, 3), dtype=np.uint8) for _ in range(3)]
    rows = torch.softmax(torch.randn(3 * 2 * 3), 0).reshape(3, 2, 3)     # key grid 2x3, stride 16
    figure = plot_affinity(memory, rows, memory[0], query_xy=(40, 5), top_k=4, memory_indices=[0, 5, 10],
                           query_index=12)
    marked = [(t, offset) for t, ax in enumerate(figure.axes[:3]) for collection in ax.collections
              if collection.get_gid() == "top_k" for offset in collection.get_offsets()]
    assert len(marked) == 4
    expected = {(t, (c + 0.5) * 16 - 0.5, (r + 0.5) * 16 - 0.5) for t, r, c in top_k_positions(rows, 4)}
    assert {(t, float(x), float(y)) for t, (x, y) in marked} == expected
    heat = figure.axes[0].get_images()[1]
    assert heat.get_clim() == pytest.approx((rows.min().item(), rows.max().item()))   # data-driven limits
    titles = [ax.get_title() for ax in figure.axes[:4]]
    assert titles == ["memory frame 0", "memory frame 5", "memory frame 10", "frame 12: query (40, 5)"]


def test_affinity_plot_without_top_k_marks_nothing_and_checks_shapes():
    memory = np.zeros((2, 16, 16, 3), dtype=np.uint8)
    figure = plot_affinity(memory, np.ones((2, 1, 1)), memory[0], (3, 3))
    assert not [c for ax in figure.axes for c in ax.collections if c.get_gid() == "top_k"]
    with pytest.raises(ValueError, match="affinity_rows: has 3 maps but memory_frames has 2"):
        plot_affinity(memory, np.ones((3, 1, 1)), memory[0], (3, 3))
    with pytest.raises(ValueError, match=r"affinity_rows: expected shape \(T, h, w\)"):
        plot_affinity(memory, np.ones((2, 4)), memory[0], (3, 3))
    with pytest.raises(ValueError, match="outside the query frame"):
        plot_affinity(memory, np.ones((2, 1, 1)), memory[0], (16, 3))


def test_affinity_plot_places_a_padded_key_grid_on_the_frame():
    """A 20x30 frame padded to 32x32 (1 px left/right, 6 px top/bottom): a 2x2 grid of stride-16 cells."""
    extent = grid_extent((2, 2), stride=16, pad=(1, 1, 6, 6))
    assert extent == (-1.5, 30.5, 25.5, -6.5)
    frame = np.zeros((20, 30, 3), dtype=np.uint8)
    rows = np.array([[[1.0, 0.0], [0.0, 0.0]]])
    figure = plot_affinity([frame], rows, frame, query_xy=(20, 15), top_k=1, extent=extent)
    memory_ax, query_ax = figure.axes[:2]
    top = [c for c in memory_ax.collections if c.get_gid() == "top_k"][0]
    np.testing.assert_allclose(top.get_offsets(), [[-1.5 + 8, -6.5 + 8]])       # centre of cell (0, 0)
    cell = [p for p in query_ax.patches if p.get_gid() == "query_cell"][0]
    assert (cell.get_x(), cell.get_y()) == (-1.5 + 16, -6.5 + 16)                 # pixel (20, 15) is in cell (1, 1)
    assert memory_ax.get_xlim() == (-0.5, 29.5) and memory_ax.get_ylim() == (19.5, -0.5)   # padding cut off


# --- readout PCA ----------------------------------------------------------------------------

def _reference_pca_rgb(maps):
    """Brute force: SVD of all stacked positions, sign of the largest loading positive, min/max scaling."""
    vectors = np.concatenate([m.reshape(m.shape[0], -1).T for m in maps])
    centred = vectors - vectors.mean(0)
    components = np.linalg.svd(centred, full_matrices=False)[2][:3]
    components *= np.sign(components[np.arange(3), np.abs(components).argmax(1)])[:, None]
    projected = centred @ components.T
    scaled = (projected - projected.min(0)) / (projected.max(0) - projected.min(0))
    splits = np.cumsum([m.shape[1] * m.shape[2] for m in maps])[:-1]
    return [part.reshape(m.shape[1], m.shape[2], 3) for part, m in zip(np.split(scaled, splits), maps)]


def test_pca_rgb_of_a_list_uses_one_shared_basis():
    rng = np.random.default_rng(3)
    maps = [rng.normal(size=(6, 4, 5)) * np.arange(1, 7)[:, None, None], rng.normal(size=(6, 3, 3))]
    colours = readout_pca_rgb(maps, clip_percentile=0.0)
    for got, expected in zip(colours, _reference_pca_rgb(maps)):
        np.testing.assert_allclose(got, expected, atol=1e-9)
    # the same feature vector gets the same colour in both maps (it would not with separate bases)
    maps[1][:, 0, 0] = maps[0][:, 2, 3]
    shared = readout_pca_rgb(maps)
    np.testing.assert_allclose(shared[0][2, 3], shared[1][0, 0])
    separate = [readout_pca_rgb(m) for m in maps]
    assert not np.allclose(separate[0][2, 3], separate[1][0, 0])


def test_pca_rgb_first_channel_follows_the_dominant_direction():
    rng = np.random.default_rng(4)
    direction = rng.normal(size=8)
    direction /= np.linalg.norm(direction)
    coefficient = np.linspace(-3, 3, 40)
    features = (coefficient[:, None] * direction + 0.01 * rng.normal(size=(40, 8))).T.reshape(8, 5, 8)
    rgb = readout_pca_rgb(torch.from_numpy(features), clip_percentile=0.0)
    assert rgb.shape == (5, 8, 3) and rgb.min() >= 0 and rgb.max() <= 1
    correlation = np.corrcoef(rgb[..., 0].reshape(-1), coefficient)[0, 1]
    assert abs(correlation) > 0.999


def test_pca_basis_rejects_mixed_channel_counts():
    with pytest.raises(ValueError, match=r"features\[1\] has C = 3 channels but features\[0\] has C = 4"):
        PCABasis.fit([np.zeros((4, 2, 2)), np.zeros((3, 2, 2))])


def test_plot_readout_features_groups_bases_by_channel_count():
    rng = np.random.default_rng(5)
    frame = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    features = {"with QE": rng.normal(size=(8, 2, 3)), "without QE": rng.normal(size=(8, 2, 3)),
                "P_2": rng.normal(size=(4, 4, 6))}
    figure = plot_readout_features(frame, features, frame_index=3)
    shared = readout_pca_rgb([features["with QE"], features["without QE"]])
    np.testing.assert_allclose(figure.axes[1].get_images()[0].get_array(), shared[0])
    np.testing.assert_allclose(figure.axes[3].get_images()[0].get_array(), readout_pca_rgb(features["P_2"]))
    assert [ax.get_title() for ax in figure.axes[:4]] == ["frame 3", "with QE", "without QE", "P_2"]
    with pytest.raises(ValueError, match="shared PCA basis needs one feature space"):
        plot_readout_features(frame, features, shared_basis=True)


# --- curves ---------------------------------------------------------------------------------

def test_per_frame_curve_averages_objects_ignoring_absent_ones():
    j = np.array([[0.2, 0.4, np.nan],
                  [0.6, np.nan, np.nan]])
    f = np.array([[0.4, 0.6, np.nan],
                  [0.8, np.nan, np.nan]])
    frames, values = per_frame_curve({"J": j, "F": f, "frames": [1, 2, 3]})
    np.testing.assert_array_equal(frames, [1, 2, 3])
    np.testing.assert_allclose(values, [0.5, 0.5, np.nan])
    with pytest.raises(ValueError, match="J has 3 frames but F has 2"):
        per_frame_curve({"J": [1, 2, 3], "F": [1, 2]})


def test_plot_jf_curves_draws_each_method_and_highlights_the_frame():
    per_frame = {"vanilla": {"J": [0.9, 0.5, 0.2], "F": [0.7, 0.5, 0.4]}, 2: {"J&F": [1.0, 0.9, 0.8]}}
    figure = plot_jf_curves(per_frame, highlight_frame=1)
    ax = figure.axes[0]
    lines = {line.get_gid(): line for line in ax.get_lines()}
    np.testing.assert_allclose(lines["curve:vanilla"].get_ydata(), [80.0, 50.0, 30.0])     # drawn in percent
    assert np.allclose(lines["curve:2"].get_color(), object_color(2))            # object keys -> palette colour
    assert list(lines["current_frame"].get_xdata()) == [1, 1]
    assert ax.get_xlabel() == "frame t"
    with pytest.raises(ValueError, match="frame_indices: has 2 entries"):
        plot_jf_curves(per_frame, frame_indices=[0, 1])


def test_plot_memory_tradeoff_plots_sorted_sizes_and_checks_lengths():
    figure = plot_memory_tradeoff([4, 1, 2], {"ISVOS": [87.0, 86.0, 86.7]})
    line = figure.axes[0].get_lines()[0]
    np.testing.assert_array_equal(line.get_xdata(), [1, 2, 4])
    np.testing.assert_array_equal(line.get_ydata(), [86.0, 86.7, 87.0])
    with pytest.raises(ValueError, match="has 2 scores for 3 memory sizes"):
        plot_memory_tradeoff([1, 2, 4], {"XMem": [1.0, 2.0]})


def test_smooth_ema_known_values():
    np.testing.assert_allclose(smooth_ema([2.0, 2.0, 2.0], 0.9), [2.0, 2.0, 2.0])        # bias-corrected
    np.testing.assert_allclose(smooth_ema([1.0, 3.0], 0.5), [1.0, (0.25 + 1.5) / 0.75])
    np.testing.assert_allclose(smooth_ema([1.0, np.nan, 5.0], 0.0), [1.0, np.nan, 5.0])


def test_loss_curves_from_jsonl_and_csv(tmp_path):
    rows = [{"step": s, "loss": 2.0 / (s + 1), "loss_ce": 1.0 / (s + 1), "lr": 1e-3} for s in range(10)]
    rows.append({"step": 10, "J&F": 0.5})                                     # an evaluation row: a gap, not an error
    jsonl = tmp_path / "metrics.jsonl"
    jsonl.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    csv_path = tmp_path / "metrics.csv"
    csv_path.write_text("step,loss,lr\n" + "".join(f"{s},{1.0 / (s + 1)},0.001\n" for s in range(5)))
    assert load_metrics_log(csv_path)[2] == {"step": "2", "loss": str(1 / 3), "lr": "0.001"}
    figure = plot_loss_curves(jsonl, smoothing=0.0)
    lines = {line.get_gid(): line for line in figure.axes[0].get_lines() if line.get_gid()}
    assert set(lines) == {"loss:loss", "loss:loss_ce"}
    np.testing.assert_allclose(lines["loss:loss"].get_ydata(), [2.0 / (s + 1) for s in range(10)])
    assert figure.axes[0].get_yscale() == "log" and len(figure.axes) == 2
    assert len(plot_loss_curves(csv_path).axes) == 2


def test_loss_curves_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        plot_loss_curves(tmp_path / "missing.jsonl")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"step": 0, "loss": 1}\n{"step": 1, "loss": \n')
    with pytest.raises(ValueError, match="line 2: not valid JSON"):
        plot_loss_curves(broken)
    with pytest.raises(ValueError, match="every row needs a 'step' column"):
        plot_loss_curves([{"loss": 1.0}])
    with pytest.raises(ValueError, match="no numeric column with 'loss'"):
        plot_loss_curves([{"step": 0, "lr": 1.0}])


def test_save_figure_writes_atomically(tmp_path, scene):
    frame, mask = scene
    path = save_figure(compare_masks(frame, mask, mask), tmp_path / "out" / "compare.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["compare.png"]          # no temp file left behind
