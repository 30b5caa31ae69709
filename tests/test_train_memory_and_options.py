"""train: the instance batch, crop size and clip length are options, and the peak memory is estimated up front.

A run whose estimate does not fit is refused before anything is built or written, with settings that fit; the
estimate itself counts the tensors a one-sample forward pass keeps for the backward pass (plus weights, gradients
and AdamW's two moments), so it follows the preset and every size option.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from isvos_lite.cli import main, build_parser

from training_helpers import make_tiny_world


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory) -> Path:
    return make_tiny_world(tmp_path_factory.mktemp("world") / "toy")


def _args(*argv):
    return build_parser(only="train").parse_args(["train", *map(str, argv)])


def test_instance_batch_crop_size_and_clip_length_are_options():
    from isvos_lite.commands.train import build_configs

    cfg, _, stages = build_configs(_args("--preset", "paper", "--data", "d", "--out", "o", "--stage", "static", "main",
                                         "--instance-batch-size", "2", "--crop-size", "256", "--clip-frames", "4"))
    assert cfg.instance_batch_size == 2
    assert {cfg.stage(s).crop_size for s in stages} == {256} and stages == ("static", "main")
    assert cfg.static.clip_frames == 4 and cfg.main.clip_frames == 4
    with pytest.raises(ValueError, match="--crop-size.*multiple of 32"):
        build_configs(_args("--preset", "paper", "--data", "d", "--out", "o", "--crop-size", "100"))
    with pytest.raises(ValueError, match="--clip-frames"):
        build_configs(_args("--preset", "paper", "--data", "d", "--out", "o", "--clip-frames", "1"))


def test_the_estimate_grows_with_every_size_option():
    from isvos_lite.commands.train import build_configs
    from isvos_lite.train.memory import estimate_training_memory

    def estimate(*extra):
        cfg, model_cfg, stages = build_configs(_args("--preset", "lite", "--data", "d", "--out", "o",
                                                     "--stage", "main", *extra))
        return estimate_training_memory(cfg, model_cfg, stages, device="cpu")

    base = estimate("--batch-size", "1", "--instance-batch-size", "1", "--crop-size", "64", "--clip-frames", "3")
    for extra in (["--batch-size", "2", "--instance-batch-size", "1", "--crop-size", "64", "--clip-frames", "3"],
                  ["--batch-size", "1", "--instance-batch-size", "3", "--crop-size", "64", "--clip-frames", "3"],
                  ["--batch-size", "1", "--instance-batch-size", "1", "--crop-size", "128", "--clip-frames", "3"],
                  ["--batch-size", "1", "--instance-batch-size", "1", "--crop-size", "64", "--clip-frames", "5"]):
        assert estimate(*extra).peak_bytes > base.peak_bytes, extra
    none = estimate("--batch-size", "1", "--instance-every", "0", "--crop-size", "64", "--clip-frames", "3")
    assert none.peak_bytes < base.peak_bytes


def test_a_run_that_cannot_fit_is_refused_with_settings_that_fit_and_writes_nothing(tiny_world, tmp_path, capsys):
    import torch

    from isvos_lite.config import get_preset
    from isvos_lite.model.isvos import ISVOS
    from isvos_lite.train.memory import GIB, _runtime_rss

    with torch.device("meta"):
        params = sum(p.numel() for p in ISVOS(get_preset("paper", backbone_norm="bn")).parameters())
    limit = round((_runtime_rss() + 24 * params + 1.0 * GIB) / GIB, 1)     # room for small settings only
    out = tmp_path / "run"
    code = main(["train", "--preset", "paper", "--data", str(tiny_world), "--out", str(out), "--stage", "static",
                 "--backbone-norm", "bn", "--iters", "1", "--max-memory", str(limit), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "estimated peak memory" in err and f"--max-memory {limit:g}" in err
    suggestion = err.split("try:", 1)[1]
    assert "--batch-size" in suggestion and "--instance-batch-size" in suggestion
    assert not out.exists()


def test_static_stage_metrics_count_from_the_plan_not_from_a_skipped_instance_stage(tiny_world, tmp_path):
    from isvos_lite.config import get_preset
    from isvos_lite.train.batches import DataSources
    from isvos_lite.train.config import StageConfig
    from isvos_lite.train.trainer import Trainer
    from training_helpers import tiny_train_config

    cfg = tiny_train_config(static_iterations=1, val_every=0)
    cfg = cfg.replace(instance=StageConfig(iterations=368_750, batch_size=2, lr=1e-3, crop_size=64))
    trainer = Trainer(cfg, get_preset("tiny"), DataSources.discover(tiny_world), tmp_path / "r", plan=("static",),
                      progress=False)
    trainer.run()
    records = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records if "loss" in r] == [1]


def test_a_refused_train_leaves_no_out_folder(tiny_world, tmp_path, capsys):
    out = tmp_path / "never"
    code = main(["train", "--preset", "lite", "--data", str(tiny_world), "--out", str(out), "--resume", "--quiet"])
    assert code == 1 and "nothing to resume" in capsys.readouterr().err
    assert not out.exists()
