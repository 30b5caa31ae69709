"""Optional TensorBoard logs (``train --tensorboard``) and the whole-run ETA on the progress bar."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from isvos_lite.config import get_preset
from isvos_lite.train.tensorboard import TensorBoardLog


class RecordingWriter:
    def __init__(self):
        self.scalars, self.images, self.closed = [], [], False

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))

    def add_image(self, tag, image, step, dataformats):
        self.images.append((tag, image.shape, step, dataformats))

    def flush(self):
        pass

    def close(self):
        self.closed = True


def test_records_become_scalars_and_previews_images():
    writer = RecordingWriter()
    log = TensorBoardLog("unused", writer=writer)
    log.log({"stage": "main", "step": 10, "iteration": 110, "loss": 1.5, "loss_vos": 1.0, "lr": 1e-4, "max_skip": 3})
    log.log({"stage": "main", "step": 10, "iteration": 110, "val_jf": 71.5, "qe_saturated": 0.0, "val_videos": 6})
    assert ("train/loss", 1.5, 110) in writer.scalars and ("train/lr", 1e-4, 110) in writer.scalars
    assert ("val/val_jf", 71.5, 110) in writer.scalars and ("val/qe_saturated", 0.0, 110) in writer.scalars
    assert not any(tag.endswith(("stage", "step", "iteration")) for tag, _, _ in writer.scalars)
    frame, mask = np.zeros((20, 30, 3), np.uint8), np.zeros((20, 30), np.uint8)
    mask[5:10, 5:10] = 1
    log.previews([("val-000", frame, mask, mask)], 110)
    assert writer.images == [("val/prediction/val-000", (20, 64, 3), 110, "HWC")]   # prediction | 4 px | truth
    log.close()
    assert writer.closed


def test_missing_tensorboard_package_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)             # import fails
    with pytest.raises(RuntimeError, match=r"pip install -e \"\.\[tensorboard\]\""):
        TensorBoardLog(tmp_path)


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    from training_helpers import make_tiny_world
    return make_tiny_world(tmp_path_factory.mktemp("world") / "toy")


def _trainer(world, out, **kwargs):
    from training_helpers import tiny_train_config

    from isvos_lite.train.batches import DataSources
    from isvos_lite.train.trainer import Trainer
    cfg = tiny_train_config(iterations=2, val_every=2, checkpoint_every=2)
    return Trainer(cfg, get_preset("tiny"), DataSources.discover(world), out, plan=("static", "main"),
                   progress=False, **kwargs)


def test_whole_run_eta(tiny_world, tmp_path):
    trainer = _trainer(tiny_world, tmp_path / "eta")
    # static has 1 iteration, main 2: after static step 0 of 1 at 2 s/it, 1 + 2 iterations are left
    assert trainer._eta("static", 0, 2.0) == "00:06"
    assert trainer._eta("main", 1, 2.0) == "00:02"


def test_training_run_writes_tensorboard_events(tiny_world, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer = _trainer(tiny_world, tmp_path / "tb", tensorboard=True)
    trainer.run()
    events = EventAccumulator(str(tmp_path / "tb" / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    assert {"train/loss", "train/loss_vos", "train/lr", "train/sec_per_it", "val/val_jf"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("train/loss")] == [3, 4, 5]         # instance 2, static 1, main 2
    assert any(tag.startswith("val/prediction/") for tag in tags["images"])
    losses = [json_loss for json_loss in (e.value for e in events.Scalars("train/loss"))]
    assert all(np.isfinite(losses))


def test_preview_overlay_blends_objects_towards_their_palette_colour_and_keeps_the_background():
    from isvos_lite.data.palette import DAVIS_PALETTE
    from isvos_lite.train.tensorboard import filled_overlay

    frame = np.full((4, 5, 3), 100, np.uint8)
    ids = np.zeros((4, 5), np.uint8)
    ids[1, 2], ids[3, 4] = 1, 2
    out = filled_overlay(frame, ids, alpha=0.5)
    assert out.dtype == np.uint8 and out.shape == frame.shape
    assert (out[ids == 0] == 100).all()
    np.testing.assert_array_equal(out[1, 2], np.round(0.5 * 100 + 0.5 * DAVIS_PALETTE[1].astype(float)))
    np.testing.assert_array_equal(out[3, 4], np.round(0.5 * 100 + 0.5 * DAVIS_PALETTE[2].astype(float)))
