"""Resume continues the *optimisation*, not only the weights: several steps after a resume must equal those of an
uninterrupted run. The first step after a resume does not depend on the optimizer state (its loss is computed
with the restored weights), so a test that replays one step cannot see a lost AdamW state; the AMP loss scale
is not visible in the losses at all (scaling by powers of two is exact), so it is compared directly."""

from __future__ import annotations

import pytest
import torch

from isvos_lite.config import get_preset
from isvos_lite.train.batches import DataSources
from isvos_lite.train.checkpoint import latest_checkpoint_dir
from isvos_lite.train.trainer import Trainer

from training_helpers import make_tiny_world, tiny_train_config


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    return make_tiny_world(tmp_path_factory.mktemp("world") / "toy")


class Interrupt(Exception):
    pass


class ScaledTrainer(Trainer):
    """A CPU stand-in for fp16 AMP: a real GradScaler whose scale doubles every step, so its state matters."""

    def _make_scaler(self):
        return torch.amp.GradScaler("cpu", init_scale=2.0 ** 4, growth_interval=1)


def _run(world, out, trainer_class=Trainer, stop_after=None, resume=False):
    records = {}

    def on_step_end(stage, step, record):
        records[step] = record
        if step == stop_after:
            raise Interrupt

    cfg = tiny_train_config(iterations=6, checkpoint_every=2)
    trainer = trainer_class(cfg, get_preset("tiny"), DataSources.discover(world), out, plan=("main",),
                            progress=False, resume=resume, on_step_end=on_step_end)
    if stop_after is None:
        trainer.run()
    else:
        with pytest.raises(Interrupt):
            trainer.run()
    return records, trainer


@pytest.mark.parametrize("trainer_class", [Trainer, ScaledTrainer], ids=["adamw", "adamw+loss-scale"])
def test_several_steps_after_resume_equal_an_uninterrupted_run(tiny_world, tmp_path, trainer_class):
    full, full_trainer = _run(tiny_world, tmp_path / "a", trainer_class)
    _run(tiny_world, tmp_path / "b", trainer_class, stop_after=2)
    assert latest_checkpoint_dir(tmp_path / "b").name == "main-0000002"
    resumed, resumed_trainer = _run(tiny_world, tmp_path / "b", trainer_class, resume=True)
    assert sorted(resumed) == [3, 4, 5, 6]
    for step in (3, 4, 5, 6):
        for key in ("loss", "loss_vos", "loss_is", "grad_norm"):
            assert resumed[step][key] == pytest.approx(full[step][key], rel=1e-5, abs=1e-6), (step, key)
        if trainer_class is ScaledTrainer:
            assert resumed[step]["loss_scale"] == full[step]["loss_scale"] == 2.0 ** (4 + step), step
    for (name, a), (_, b) in zip(full_trainer.model.state_dict().items(), resumed_trainer.model.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=f"weights differ after resume: {name}")
