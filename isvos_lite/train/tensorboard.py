"""Optional TensorBoard logs of a training run, next to ``metrics.jsonl`` (``isvos-lite train --tensorboard``).

Install the extra first: ``pip install -e ".[tensorboard]"`` (the package works without it; only
``--tensorboard`` needs it). Then ``tensorboard --logdir runs/`` shows, per run (``<out>/tensorboard/``):

* ``train/<term>``: every loss term of the metrics log (``loss``, ``loss_vos``, ``loss_is``, ``is_loss_dice``, ...),
  ``lr``, ``grad_norm``, ``sec_per_it`` (and ``loss_scale`` with fp16), averaged over ``log_every`` iterations;
* ``val/<metric>``: validation J&F / J / F (static and main stages), the QE-health numbers, instance mask AP
  (instance stage);
* ``val/prediction/<video>``: images of a few validation videos at each validation: the frame with the predicted
  mask overlaid, next to the ground truth.

The x axis is the recipe-wide ``iteration`` (instance, static, main one after the other), as in ``metrics.jsonl``.
A resumed run drops the events after the resumed iteration (``purge_step``), so the curves never hold two
histories.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from isvos_lite.data.palette import DAVIS_PALETTE

__all__ = ["TensorBoardLog", "TENSORBOARD_MISSING"]

TENSORBOARD_MISSING = ("--tensorboard needs the tensorboard package, which is an optional extra: "
                       "pip install -e \".[tensorboard]\" (or pip install tensorboard); metrics.jsonl and "
                       "loss_curve.png are written without it")

_NOT_SCALARS = {"stage", "step", "iteration"}


class TensorBoardLog:
    """Mirror metrics records and validation previews to TensorBoard.

    ``writer``: anything with ``add_scalar(tag, value, step)``, ``add_image(tag, image, step, dataformats=)``,
    ``flush()`` and ``close()``; default: ``torch.utils.tensorboard.SummaryWriter`` on ``<out_dir>/tensorboard``.
    """

    def __init__(self, out_dir: str | os.PathLike, purge_step: int | None = None, writer=None):
        if writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as error:              # torch's module imports the tensorboard package
                raise RuntimeError(TENSORBOARD_MISSING) from error
            writer = SummaryWriter(log_dir=str(Path(out_dir) / "tensorboard"), purge_step=purge_step)
        self.writer = writer

    def log(self, record: dict) -> None:
        """One ``metrics.jsonl`` record: its numbers become scalars at ``record["iteration"]``."""
        iteration = int(record["iteration"])
        for key, value in record.items():
            if key in _NOT_SCALARS or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            group = "val" if key.startswith(("val_", "qe_")) else "train"
            self.writer.add_scalar(f"{group}/{key}", float(value), iteration)
        self.writer.flush()

    def previews(self, previews: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]], iteration: int) -> None:
        """``(video, frame (H, W, 3) uint8, predicted ids (H, W), ground-truth ids (H, W))`` -> one image each:
        prediction overlay | ground-truth overlay, side by side."""
        for video, frame, predicted, truth in previews:
            gap = np.full((frame.shape[0], 4, 3), 255, np.uint8)
            image = np.concatenate([filled_overlay(frame, predicted), gap, filled_overlay(frame, truth)], axis=1)
            self.writer.add_image(f"val/prediction/{video}", image, iteration, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def filled_overlay(frame: np.ndarray, ids: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """(H, W, 3) uint8 frame with each object's pixels blended towards its DAVIS palette colour (``alpha``);
    background (0) stays as it is. A plain preview for the training log (the course's figures use
    :func:`isvos_lite.viz.overlay_mask`)."""
    frame = np.asarray(frame, dtype=np.uint8)
    ids = np.asarray(ids)
    colours = DAVIS_PALETTE[ids.astype(np.uint8)].astype(np.float32)           # (H, W, 3)
    blended = np.round((1 - alpha) * frame.astype(np.float32) + alpha * colours).astype(np.uint8)
    return np.where((ids > 0)[..., None], blended, frame)
