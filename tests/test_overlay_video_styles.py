"""Overlay videos and `isvos-lite predict` draw masks in the course's overlay styles and palettes."""

import cv2
import numpy as np
import pytest

from isvos_lite.cli import build_parser
from isvos_lite.viz.colors import CONTRAST_PALETTE
from isvos_lite.viz.video_io import OverlayVideoWriter, write_overlay_video


def _first_frame(path):
    capture = cv2.VideoCapture(str(path))
    ok, bgr = capture.read()
    capture.release()
    assert ok
    return bgr[..., ::-1].astype(float)


def test_default_overlay_video_outlines_object_1_in_the_contrast_blue(tmp_path):
    frames = [np.full((64, 96, 3), 100, np.uint8) for _ in range(3)]
    masks = [np.zeros((64, 96), np.uint8) for _ in frames]
    for mask in masks:
        mask[12:52, 16:80] = 1
    rgb = _first_frame(write_overlay_video(tmp_path / "v.mp4", frames, masks, fps=8))
    np.testing.assert_allclose(rgb[25:40, 35:60].mean((0, 1)), [100, 100, 100], atol=12)   # inside: the frame
    np.testing.assert_allclose(rgb[30:34, 16:18].mean((0, 1)), CONTRAST_PALETTE[1], atol=30)  # the band: blue
    filled = _first_frame(write_overlay_video(tmp_path / "f.mp4", frames, masks, fps=8, style="fill"))
    np.testing.assert_allclose(filled[25:40, 35:60].mean((0, 1)), 0.4 * 100 + 0.6 * CONTRAST_PALETTE[1], atol=12)


def test_overlay_writer_and_predict_reject_unknown_styles(tmp_path):
    with pytest.raises(ValueError, match="style"):
        OverlayVideoWriter(tmp_path / "v.mp4", style="glow")
    with pytest.raises(ValueError, match="palette"):
        OverlayVideoWriter(tmp_path / "v.mp4", palette="rainbow")
    parser = build_parser()
    base = ["predict", "--checkpoint", "c.safetensors", "--frames", "f", "--mask", "m.png", "--out", "o"]
    args = parser.parse_args(base)
    assert (args.overlay_style, args.overlay_colors) == ("outline", "contrast")
    args = parser.parse_args(base + ["--overlay-style", "fill", "--overlay-colors", "davis"])
    assert (args.overlay_style, args.overlay_colors) == ("fill", "davis")
    with pytest.raises(SystemExit):
        parser.parse_args(base + ["--overlay-style", "glow"])
