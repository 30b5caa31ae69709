"""Shared by the trainer tests: a tiny teaching world and a training config that runs in tenths of a second."""

from __future__ import annotations

from pathlib import Path

from isvos_lite.train.config import StageConfig, TrainConfig

TINY_CATEGORIES = ("disc", "box", "triangle")      # fewer categories than the model has classes is fine


def make_tiny_world(path: Path) -> Path:
    from isvos_lite.data.export import WorldSizes, generate_world
    from isvos_lite.data.world import WorldConfig

    config = WorldConfig(height=64, width=96, min_frames=6, max_frames=7, eval_min_frames=6, eval_max_frames=7,
                         min_objects=1, max_objects=2, categories=TINY_CATEGORIES)
    generate_world(path, seed=1, config=config, sizes=WorldSizes(train=3, val=1, lookalike=1, heldout=1, youtube_train=1,
                                                                 youtube_valid=1, coco_train=8, coco_val=4),
                   youtube=False, progress=False)
    return path


def tiny_train_config(iterations: int = 3, static_iterations: int = 1, instance_iterations: int = 2,
                      **overrides) -> TrainConfig:
    """Two clips of 3 frames at 64x64 and two COCO images per step: a few tenths of a second on a CPU."""
    stage = dict(iterations=iterations, batch_size=2, lr=1e-3, clip_frames=3, max_objects=2, crop_size=64,
                 max_skip=((0.0, 2), (0.5, 3)), bootstrap_start=1, bootstrap_end=2)
    fields = dict(name="lite", model_preset="tiny",
                  instance=StageConfig(**{**stage, "iterations": instance_iterations}),
                  static=StageConfig(**{**stage, "iterations": static_iterations}),
                  main=StageConfig(**{**stage, "lr_decay_steps": (iterations - 1,)}),
                  instance_lr_scale=1.0, freeze_batchnorm=False, instance_batch_size=2, num_points=64,
                  amp=False, num_workers=0, log_every=1, checkpoint_every=2, val_every=0, val_videos=1)
    fields.update(overrides)
    return TrainConfig(**fields)
