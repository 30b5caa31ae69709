"""Periodic validation during training: J&F on a few videos of a DAVIS-format split (§4.1, "Evaluation"), the QE
health of the EKE maps, and the IS branch's mask AP on held-out instance images.

J&F is :func:`isvos_lite.eval.validation.validate_jf` (the same quick score the QE-health test uses); this is a
signal for the training curve, the full evaluation is ``isvos-lite eval``.
"""

from __future__ import annotations

import os

import torch

from isvos_lite.eval.instance_ap import score_instance_ap
from isvos_lite.eval.qe_health import frames_of_split, map_statistics
from isvos_lite.eval.validation import validate_jf

__all__ = ["validate_jf", "validate_qe_health", "validate_instance_ap", "describe_validation"]


@torch.no_grad()
def validate_qe_health(model: torch.nn.Module, root: str | os.PathLike, split: str = "val", num_videos: int = 8) -> dict:
    """The EKE's map statistics (``isvos_lite.eval.qe_health.map_statistics``) on frames of ``num_videos`` videos."""
    stats = map_statistics(model, frames_of_split(root, split, num_videos))
    return {k: stats[k] for k in ("qe_saturated", "qe_map_correlation", "qe_mask_agreement", "qe_key_change",
                                  "qe_logit_mean")}


@torch.no_grad()
def validate_instance_ap(model: torch.nn.Module, sources, max_images: int = 100) -> dict:
    """Mask AP (percent) of the IS branch on the held-out instance images (``<coco>/annotations/instances_val.json``)."""
    coco_dir = sources.coco_annotations.parent.parent
    scores = score_instance_ap(model, coco_dir, split="val", max_images=max_images, progress=False)
    return {"val_ap": scores["ap"], "val_agnostic_ap": scores["agnostic_ap"], "val_ap_images": scores["images"]}


def describe_validation(result: dict) -> str:
    """One line for the training log: J&F (and QE health) or instance AP."""
    if "val_jf" in result:
        text = f"J&F {result['val_jf']:.1f} (J {result['val_j']:.1f}, F {result['val_f']:.1f})"
        if "qe_saturated" in result:
            text += (f"; QE maps: saturated {100 * result['qe_saturated']:.0f} %, correlation "
                     f"{result['qe_map_correlation']:.2f}, mask agreement {result['qe_mask_agreement']:.2f}")
        return text
    return f"instance mask AP {result['val_ap']:.1f} (class-agnostic {result['val_agnostic_ap']:.1f})"
