"""The log colour scale of the affinity maps: every top-k weight visible when matching is nearly one-hot."""

import numpy as np
import pytest

from isvos_lite.viz.affinity import log_scale_floor, plot_affinity


def _one_hot_rows():
    rows = np.full((2, 4, 6), 1e-9)
    rows[0, 1, 2] = 0.97                        # the best match holds almost all the weight ...
    rows[1, 2, 3], rows[1, 0, 0] = 0.02, 0.01   # ... the other top-3 weights are 50-100x weaker
    return rows / rows.sum()


def test_log_scale_colours_every_top_k_weight_and_hides_the_rest():
    rows = _one_hot_rows()
    frames = [np.zeros((64, 96, 3), np.uint8)] * 2
    assert log_scale_floor(rows, top_k=3) == pytest.approx(rows[1, 0, 0] / 10)
    linear = plot_affinity(frames, rows, frames[0], (10, 10), top_k=3)
    log = plot_affinity(frames, rows, frames[0], (10, 10), top_k=3, scale="log")
    heat_linear = linear.axes[1].get_images()[1]
    heat_log = log.axes[1].get_images()[1]
    weak = (2, 3)                                                     # a top-3 weight 50x below the best
    # linear: the second-best match is drawn in (nearly) the colour of zero; log: well above the bottom
    assert heat_linear.norm(rows[1][weak]) < 0.05
    assert heat_log.norm(rows[1][weak]) > 0.3
    shown = heat_log.get_array()
    assert np.ma.is_masked(shown) and shown.mask.sum() == rows[1].size - 2   # only the 2 kept cells are drawn
    assert "log scale" in log.axes[-1].get_ylabel()
    with pytest.raises(ValueError, match="scale"):
        plot_affinity(frames, rows, frames[0], (10, 10), scale="sqrt")


def test_log_scale_floor_stays_within_six_decades_of_the_best():
    rows = np.zeros((1, 2, 10))
    rows[0, 0, :3] = [1.0, 1e-3, 1e-14]         # a trained model: the 3rd match is 10^14 below the best
    assert log_scale_floor(rows, top_k=3) == pytest.approx(1e-6)
    assert log_scale_floor(rows, top_k=2) == pytest.approx(1e-4)
    assert log_scale_floor(np.zeros((1, 2, 2)), top_k=3) > 0
