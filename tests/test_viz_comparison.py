"""Prediction beside ground truth with per-frame J&F (isvos_lite.viz.comparison)."""

import numpy as np
import pytest

from isvos_lite.viz.comparison import error_shares, frame_jf, show_prediction_and_truth, side_by_side_frame


def _masks():
    gt = np.zeros((3, 40, 60), np.uint8)
    gt[:, 10:30, 10:30] = 1
    gt[:, 5:15, 40:55] = 2
    return gt


def test_frame_jf_is_percent_per_frame():
    gt = _masks()
    pred = gt.copy()
    pred[1] = 0                                    # frame 1: nothing predicted
    pred[2, 10:30, 10:30] = 2                      # frame 2: object 1 labelled as object 2
    jf = frame_jf(list(gt), list(pred))
    assert jf.shape == (3,) and jf[0] == pytest.approx(100.0)
    assert jf[1] == pytest.approx(0.0) and 0 < jf[2] < 60


def test_error_shares_say_which_error_dominates():
    gt = _masks()[0]
    missed = gt.copy()
    missed[10:30, 10:20] = 0
    assert error_shares(missed, gt)["missed"] == pytest.approx(1.0)
    spilled = gt.copy()
    spilled[32:38, 0:50] = 1
    shares = error_shares(spilled, gt)
    assert shares["spurious"] == pytest.approx(1.0) and shares["wrong pixels"] == 6 * 50
    swapped = np.where(gt == 1, 2, gt).astype(np.uint8)
    assert error_shares(swapped, gt)["wrong object"] == pytest.approx(1.0)


def test_side_by_side_frame_puts_truth_right_of_the_prediction():
    frame = np.full((40, 60, 3), 90, np.uint8)
    gt = _masks()[0]
    image = side_by_side_frame(frame, np.zeros_like(gt), gt, label="frame 3", jf=12.5)
    assert image.shape == (40 + 22, 2 * 60 + 4, 3) and image.dtype == np.uint8
    left, right = image[22:, :60], image[22:, 64:]
    assert np.all(left[10, 20] == 90) and not np.all(right[10, 20] == 90)     # only the truth is outlined there
    assert np.all(right[20, 20] == 90)                                         # the default outline keeps the inside
    filled = side_by_side_frame(frame, np.zeros_like(gt), gt, style="fill")[22:, 64:]
    assert not np.all(filled[20, 20] == 90)                                    # the fill style paints it
    assert side_by_side_frame(frame, gt, None).shape == image.shape


def test_show_prediction_and_truth_titles_carry_the_frame_jf():
    gt = _masks()
    pred = gt.copy()
    pred[1] = 0
    frames = [np.full((40, 60, 3), 90, np.uint8)] * 3
    figure = show_prediction_and_truth(frames, list(pred), list(gt), [0, 1, 2])
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    assert "frame 0: given mask" in titles and "frame 1: J&F 0.0" in titles and "frame 2: J&F 100.0" in titles
    assert titles.count("frame 1: ground truth") == 1
