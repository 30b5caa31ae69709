"""The trainer: loss goes down, exact resume, atomic checkpoints, NaN stop, bad input, CLI, presets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from isvos_lite.config import get_preset
from isvos_lite.train.batches import DataSources, StepBatches, build_clip_dataset, build_instance_dataset
from isvos_lite.train.checkpoint import latest_checkpoint_dir, load_training_checkpoint
from isvos_lite.train.config import StageConfig, get_train_preset, train_config_from_dict
from isvos_lite.train.trainer import JointObjective, Trainer, TrainingDiverged, build_optimizer, freeze_batchnorm
from isvos_lite.train.losses import VOSLoss
from isvos_lite.train.criterion import SetCriterion
from isvos_lite.model.isvos import ISVOS

from training_helpers import make_tiny_world, tiny_train_config


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> Path:
    return make_tiny_world(tmp_path_factory.mktemp("world") / "toy")



def make_trainer(world, out, cfg=None, plan=("main",), **kwargs) -> Trainer:
    cfg = cfg or tiny_train_config()
    return Trainer(cfg, kwargs.pop("model_cfg", get_preset("tiny")), DataSources.discover(world), out, plan=plan,
                   progress=False, **kwargs)


class Interrupt(Exception):
    pass


# --- learning ----------------------------------------------------------------------------------

def test_a_few_steps_on_a_fixed_batch_drive_the_loss_down(tiny_world):
    torch.manual_seed(0)
    cfg = tiny_train_config()
    sources = DataSources.discover(tiny_world)
    model_cfg = get_preset("tiny")
    batches = StepBatches(build_clip_dataset(sources, "main", cfg.main),
                          build_instance_dataset(sources, cfg.main, model_cfg.num_classes),
                          "main", cfg.main, 2, 2, 1, seed=0, rank=0)
    batch = batches[0]
    model = ISVOS(model_cfg)
    objective = JointObjective(model, VOSLoss(100, 200), SetCriterion(model_cfg.num_classes, num_points=256), 1.0)
    optimizer = build_optimizer(model, 2e-3, 1.0, 0.05)
    images, targets = batch["instance"]
    history = []
    for step in range(8):
        torch.manual_seed(step)
        losses = objective(batch["frames"], batch["masks"], batch["labels"], batch["selector"], 0, images, targets)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        history.append((losses["loss_vos"].item(), losses["loss_is"].item()))
    first_vos, first_is = history[0]
    last_vos = min(v for v, _ in history[-3:])
    last_is = min(i for _, i in history[-3:])
    assert last_vos < 0.8 * first_vos
    assert last_is < 0.8 * first_is


def test_step_batches_are_a_pure_function_of_the_step(tiny_world):
    cfg = tiny_train_config()
    sources = DataSources.discover(tiny_world)
    batches = StepBatches(build_clip_dataset(sources, "main", cfg.main), None, "main", cfg.main, 2, 2, 1, seed=0, rank=0)
    torch.manual_seed(123)
    a = batches[1]
    torch.rand(5)                                                        # global RNG moves on: no effect
    b = batches[1]
    torch.testing.assert_close(a["frames"], b["frames"])
    assert not torch.equal(a["frames"], batches[2]["frames"])
    other_rank = StepBatches(batches.clips, None, "main", cfg.main, 2, 2, 1, seed=0, rank=1)
    assert not torch.equal(a["frames"], other_rank[1]["frames"])
    assert batches[0]["max_skip"] == 2 and batches[2]["max_skip"] == 3  # the curriculum follows the step


# --- resume ------------------------------------------------------------------------------------

def test_killed_and_resumed_run_gives_the_same_next_losses(tiny_world, tmp_path):
    uninterrupted = {}
    make_trainer(tiny_world, tmp_path / "a", plan=("static", "main"),
                 on_step_end=lambda stage, step, r: uninterrupted.__setitem__((stage, step), r["loss"])).run()

    def kill_after_main_step_2(stage, step, record):
        if (stage, step) == ("main", 2):
            raise Interrupt
    with pytest.raises(Interrupt):
        make_trainer(tiny_world, tmp_path / "b", plan=("static", "main"), on_step_end=kill_after_main_step_2).run()
    assert latest_checkpoint_dir(tmp_path / "b").name == "main-0000002"

    resumed = {}
    make_trainer(tiny_world, tmp_path / "b", plan=("static", "main"), resume=True,
                 on_step_end=lambda stage, step, r: resumed.__setitem__((stage, step), r["loss"])).run()
    assert sorted(resumed) == [("main", 3)]
    for key, loss in resumed.items():
        assert loss == pytest.approx(uninterrupted[key], rel=1e-6, abs=1e-7), key

    # the metrics log holds one history (the interrupted lines were replaced), and the plot exists
    records = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    iterations = [r["iteration"] for r in records if "loss" in r]
    assert iterations == sorted(set(iterations)) == list(range(1, 5))      # the plan's stages: static 1 + main 3
    assert (tmp_path / "b" / "loss_curve.png").stat().st_size > 1000
    # the trained model loads with the project's checkpoint reader
    from isvos_lite.checkpoint import load_checkpoint
    model = load_checkpoint(tmp_path / "b" / "model.safetensors")
    assert model.checkpoint_meta["stage"] == "main"


def test_resume_refuses_other_presets_architectures_and_settings(tiny_world, tmp_path):
    make_trainer(tiny_world, tmp_path, cfg=tiny_train_config(iterations=1)).run()
    with pytest.raises(ValueError, match="already holds a training run"):
        make_trainer(tiny_world, tmp_path, cfg=tiny_train_config(iterations=1))
    with pytest.raises(ValueError, match="preset 'lite', not 'paper'"):
        make_trainer(tiny_world, tmp_path, cfg=tiny_train_config(iterations=1, name="paper"), resume=True)
    with pytest.raises(ValueError, match="query_enhancement"):
        make_trainer(tiny_world, tmp_path, cfg=tiny_train_config(iterations=1), resume=True,
                     model_cfg=get_preset("tiny", query_enhancement=False))
    with pytest.raises(ValueError, match="main"):
        make_trainer(tiny_world, tmp_path, cfg=tiny_train_config(iterations=2), resume=True)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        make_trainer(tiny_world, tmp_path / "empty", resume=True)


# --- failures ----------------------------------------------------------------------------------

def test_a_failed_save_leaves_the_last_good_checkpoint(tiny_world, tmp_path, monkeypatch):
    trainer = make_trainer(tiny_world, tmp_path, cfg=tiny_train_config(iterations=2, checkpoint_every=1))
    real_save = torch.save

    def disk_full_at_step_2(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("step") == 2:
            raise OSError(28, "No space left on device")
        return real_save(obj, f, *args, **kwargs)
    monkeypatch.setattr(torch, "save", disk_full_at_step_2)
    with pytest.raises(RuntimeError, match="disk full.*main-0000001"):
        trainer.run()
    folders = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert folders == ["latest.json", "main-0000001"]                   # no half-written folder left
    state = load_training_checkpoint(latest_checkpoint_dir(tmp_path), ISVOS(get_preset("tiny")))
    assert state["step"] == 1


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_checkpoint(tiny_world, tmp_path):
    trainer = make_trainer(tiny_world, tmp_path, cfg=tiny_train_config(iterations=2, checkpoint_every=1))
    real_forward = trainer.objective.forward

    def nan_at_second_step(*args):
        losses = real_forward(*args)
        if args[4] == 1:                                                 # 0-based step 1
            losses["loss"] = losses["loss"] * float("nan")
        return losses
    trainer.objective.forward = nan_at_second_step
    with pytest.raises(TrainingDiverged, match="NaN/inf at stage 'main' step 1.*main-0000001"):
        trainer.run()
    assert latest_checkpoint_dir(tmp_path).name == "main-0000001"
    state = load_training_checkpoint(latest_checkpoint_dir(tmp_path), ISVOS(get_preset("tiny")))
    assert state["step"] == 1


def test_bad_data_paths_and_categories(tiny_world, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        DataSources.discover(tmp_path / "missing")
    (tmp_path / "flat").mkdir()
    with pytest.raises(ValueError, match="not in DAVIS layout"):
        DataSources.discover(tmp_path / "flat")
    with pytest.raises(FileNotFoundError, match="COCO"):
        DataSources.discover(tiny_world, coco=tmp_path / "flat")
    with pytest.raises(ValueError, match="4 categories .* predicts 2 classes"):
        build_instance_dataset(DataSources.discover(tiny_world), tiny_train_config().main, num_classes=2)


# --- pieces ------------------------------------------------------------------------------------

def test_optimizer_gives_the_instance_branch_its_learning_rate_scale():
    model = ISVOS(get_preset("tiny"))
    optimizer = build_optimizer(model, 1e-3, 0.1, 0.05)
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert groups["vos"]["lr"] == pytest.approx(1e-3) and groups["instance"]["lr"] == pytest.approx(1e-4)
    instance_ids = {id(p) for p in groups["instance"]["params"]}
    assert instance_ids == {id(p) for m in (model.pixel_decoder, model.transformer_decoder) for p in m.parameters()}
    assert all(g["weight_decay"] == 0.05 for g in optimizer.param_groups)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))


def test_freeze_batchnorm_keeps_running_statistics():
    model = ISVOS(get_preset("tiny")).train()
    freeze_batchnorm(model)
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = bn.running_mean.clone()
    model.backbone(torch.rand(2, 3, 64, 64) * 5)
    torch.testing.assert_close(bn.running_mean, before)
    assert not bn.training


def test_presets_follow_the_paper_and_schedules_scale():
    paper = get_train_preset("paper")
    assert (paper.static.iterations, paper.static.batch_size, paper.static.lr) == (150_000, 56, 4e-5)
    assert (paper.main.iterations, paper.main.batch_size, paper.main.lr) == (110_000, 16, 2e-5)
    assert paper.main.lr_decay_steps == (80_000,) and paper.weight_decay == 0.05 and paper.instance_lr_scale == 0.1
    assert paper.main.lr_factor_at(79_999) == 1.0 and paper.main.lr_factor_at(80_000) == pytest.approx(0.1)
    assert [paper.main.max_skip_at(s) for s in (0, 11_000, 33_000, 99_000)] == [5, 10, 15, 5]
    short = paper.main.with_iterations(1100)
    assert short.lr_decay_steps == (800,) and (short.bootstrap_start, short.bootstrap_end) == (200, 700)
    assert paper.instance.batch_size == 16 and paper.instance.lr == 1e-4      # Mask2Former's COCO schedule
    lite = get_train_preset("lite")
    assert train_config_from_dict(json.loads(json.dumps(lite.to_dict()))) == lite
    # one scale: every stage crops 160x160 at the frames' own resolution (jitter 0.8-1.25)
    assert {lite.stage(s).crop_size for s in ("instance", "static", "main")} == {160}
    assert {lite.stage(s).scale_jitter for s in ("instance", "static", "main")} == {(0.8, 1.25)}
    assert lite.instance_data == "stream" and lite.qe_align_weight > 0
    old = lite.to_dict()
    del old["instance"]
    with pytest.raises(ValueError, match="older isvos-lite"):
        train_config_from_dict(old)
    with pytest.raises(ValueError, match="unknown fields"):
        train_config_from_dict({**lite.to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="multiple of 32"):
        StageConfig(iterations=1, batch_size=1, lr=1e-3, crop_size=100)


def test_validation_scores_a_model(tiny_world):
    from isvos_lite.eval.validation import validate_jf
    torch.manual_seed(0)
    result = validate_jf(ISVOS(get_preset("tiny")), tiny_world, "val", num_videos=1)
    assert 0.0 <= result["val_j"] <= 100.0 and 0.0 <= result["val_f"] <= 100.0
    assert result["val_jf"] == pytest.approx((result["val_j"] + result["val_f"]) / 2)


# --- the command line --------------------------------------------------------------------------

def test_cli_trains_and_reports_bad_input(tiny_world, tmp_path, capsys):
    from isvos_lite.cli import main
    assert main(["train", "--preset", "lite", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")]) == 1
    assert "does not exist" in capsys.readouterr().err
    code = main(["train", "--preset", "lite", "--data", str(tiny_world), "--out", str(tmp_path / "run"),
                 "--stage", "main", "--iters", "1", "--batch-size", "1", "--val-every", "1", "--val-videos", "1",
                 "--device", "cpu", "--quiet"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["stages"][0]["stage"] == "main" and summary["stages"][0]["val_jf"] is not None
    assert (tmp_path / "run" / "model.safetensors").exists() and (tmp_path / "run" / "model.json").exists()
    # resuming with other settings is refused in one clean line
    assert main(["train", "--preset", "lite", "--data", str(tiny_world), "--out", str(tmp_path / "run"),
                 "--stage", "main", "--iters", "2", "--batch-size", "1", "--resume", "--quiet"]) == 1
    assert "different settings" in capsys.readouterr().err


# --- the instance stage, the one-scale crops and the EKE alignment term ---------------------------

def test_instance_stage_trains_the_is_branch_alone_and_initialises_any_variant(tiny_world, tmp_path):
    cfg = tiny_train_config(instance_data="stream", val_every=0)
    records = []
    trainer = make_trainer(tiny_world, tmp_path / "is", cfg=cfg, plan=("instance",),
                           on_step_end=lambda stage, step, r: records.append((stage, r)))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.run()
    assert [stage for stage, _ in records] == ["instance", "instance"]
    assert all("loss_is" in r and "loss_vos" not in r for _, r in records)
    after = trainer.model.state_dict()
    changed = {k.split(".")[0] for k in after if after[k].is_floating_point() and not torch.equal(after[k], before[k])}
    # only the backbone and the IS branch learn in this stage; the VOS modules are untouched
    assert {"backbone", "pixel_decoder", "transformer_decoder"} <= changed
    assert not changed & {"key_encoder", "value_encoder", "decoder"}

    # the result initialises the backbone + IS branch of a variant with another architecture (no QE)
    from isvos_lite.checkpoint import load_instance_branch
    variant = ISVOS(get_preset("tiny", query_enhancement=False))
    assert load_instance_branch(tmp_path / "is" / "model.safetensors", variant)["loaded"] > 0
    from isvos_lite.checkpoint import load_checkpoint
    source = load_checkpoint(tmp_path / "is" / "model.safetensors")
    for name, tensor in variant.state_dict().items():
        if name.startswith(("backbone.", "pixel_decoder.", "transformer_decoder.")):
            torch.testing.assert_close(tensor, source.state_dict()[name])
    trained = make_trainer(tiny_world, tmp_path / "vos", cfg=cfg, model_cfg=get_preset("tiny", query_enhancement=False),
                           init_instance=tmp_path / "is" / "model.safetensors")
    torch.testing.assert_close(trained.model.backbone.conv1.weight, source.backbone.conv1.weight)
    with pytest.raises(ValueError, match="does not fit"):
        load_instance_branch(tmp_path / "is" / "model.safetensors", ISVOS(get_preset("lite")))


def test_joint_objective_adds_the_qe_alignment_term_only_with_query_enhancement(tiny_world):
    cfg = tiny_train_config()
    sources = DataSources.discover(tiny_world)
    batch = StepBatches(build_clip_dataset(sources, "main", cfg.main), None, "main", cfg.main, 2, 2, 0,
                        seed=0, rank=0)[0]
    args = (batch["frames"], batch["masks"], batch["labels"], batch["selector"], 0)
    torch.manual_seed(0)
    model = ISVOS(get_preset("tiny"))
    with_term = JointObjective(model, VOSLoss(100, 200), SetCriterion(4, num_points=64), 1.0, qe_align_weight=0.5)
    losses = with_term(*args)
    assert losses["loss_qe_align"] > 0
    torch.testing.assert_close(losses["loss"], losses["loss_vos"] + 0.5 * losses["loss_qe_align"])
    without_qe = JointObjective(ISVOS(get_preset("tiny", query_enhancement=False)), VOSLoss(100, 200),
                                SetCriterion(4, num_points=64), 1.0, qe_align_weight=0.5)
    losses = without_qe(*args)
    assert "loss_qe_align" not in losses
    torch.testing.assert_close(losses["loss"], losses["loss_vos"])


def test_one_scale_crops_keep_object_sizes(tiny_world):
    """One-scale crops keep the frame's resolution (zoom in the jitter range, window inside the frame); the
    references' RandomResizedCrop enlarges objects. A VOS clip crop shows objects no larger than in the video."""
    import numpy as np
    from isvos_lite.data import augment as A
    from isvos_lite.data.sequences import davis_sequences
    from isvos_lite.data.vos_dataset import VOSClipDataset
    rng = np.random.default_rng(0)
    for _ in range(50):
        m = A.native_scale_crop_matrix(rng, (64, 96), (32, 32), (1.0, 1.0))
        assert m[0, 0] == pytest.approx(1.0) and m[1, 1] == pytest.approx(1.0)
        x_offset = 0.5 * m[0, 0] - 0.5 - m[0, 2]                       # window start, frame pixels
        assert -1e-9 <= x_offset <= 96 - 32 + 1e-9
        assert 0.8 <= A.native_scale_crop_matrix(rng, (64, 96), (32, 32), (0.8, 1.25))[0, 0] <= 1.25
    resized = [A.random_resized_crop_matrix(rng, (64, 96), (32, 32))[0, 0] for _ in range(50)]
    assert max(resized) - min(resized) > 0.2 and max(resized) < 0.9      # many scales, none of them 1

    largest = max(int((davis_sequences(tiny_world, "train")[0].read_gt(i) > 0).sum())
                  for i in range(len(davis_sequences(tiny_world, "train")[0])))
    clips = VOSClipDataset(tiny_world, "train", num_frames=2, max_objects=2, crop_size=32, scale_jitter=(1.0, 1.0),
                           names=[davis_sequences(tiny_world, "train")[0].name])
    for seed in range(5):
        torch.manual_seed(seed)
        item = clips[0]
        assert item["frames"].shape[-2:] == (32, 32)
        assert int((item["labels"] > 0).sum(dim=(1, 2)).max()) <= largest * 1.1    # not enlarged
