"""J&F of a model on a few videos of a DAVIS-format split (§4.1, "Evaluation"): the quick score behind training
validation and the QE-health flatten test.

The videos are segmented with the inference protocol (``isvos_lite.inference.segment_video``: memory every 5th
frame, top-k 20) and scored like the official DAVIS 2017 semi-supervised evaluation: per object, J and F are
averaged over the frames between the first and the last (both excluded), then averaged over all objects of all
videos; J&F is the mean of the two, in percent. The full evaluation is ``isvos-lite eval``.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from isvos_lite.data.sequences import davis_sequences
from isvos_lite.eval.metrics import frame_scores, tolerance_radius
from isvos_lite.inference import segment_video

__all__ = ["validate_jf"]


@torch.no_grad()
def validate_jf(model: torch.nn.Module, root: str | os.PathLike, split: str = "val", num_videos: int = 8,
                max_internal_size: int | None = None, previews: list | None = None, num_previews: int = 3,
                before_video=None) -> dict:
    """Mean J, F and J&F (percent) of ``model`` on the first ``num_videos`` videos of ``split``.

    ``previews``: a list that gets ``(video, frame (H, W, 3), predicted ids (H, W), ground truth (H, W))`` of the
    middle annotated frame of the first ``num_previews`` videos (for TensorBoard). Leaves the model in eval mode
    (the caller switches it back to training). ``before_video(name)`` is called before each video is segmented
    (e.g. to reset a stateful QE-health probe, :mod:`isvos_lite.eval.qe_health`).
    """
    sequences = davis_sequences(root, split)[:num_videos]
    object_j, object_f = [], []
    for seq in sequences:
        if before_video is not None:
            before_video(seq.name)
        frames = [seq.read_frame(i) for i in range(len(seq))]
        starts = seq.start_objects                                # {frame index: [object ids starting there]}
        masks_at = {t: seq.read_given_mask(t) for t in starts if t != 0}
        first = seq.read_given_mask(0) if 0 in starts else np.zeros(frames[0].shape[:2], np.uint8)
        # fp32 (amp=False), not the bf16 inference default of some CPUs: validation numbers stay comparable across
        # machines and with every run made before that default existed (training itself is fp32 on a CPU)
        predictions = segment_video(model, frames, first, masks_at=masks_at, progress=False,
                                    max_internal_size=max_internal_size, amp=False)
        scored = [i for i in seq.gt_indices if 0 < i < len(seq) - 1]
        if not scored:
            continue
        ids = seq.object_ids
        radius = tolerance_radius(*frames[0].shape[:2])
        per_frame = [frame_scores(seq.read_gt(i), predictions[i], ids, radius) for i in scored]
        j = np.stack([s[0] for s in per_frame])                   # (frames, objects)
        f = np.stack([s[1] for s in per_frame])
        if previews is not None and len(previews) < num_previews:
            middle = scored[len(scored) // 2]
            previews.append((seq.name, frames[middle], predictions[middle], seq.read_gt(middle)))
        object_j.extend(j.mean(0).tolist())
        object_f.extend(f.mean(0).tolist())
    if not object_j:
        raise ValueError(f"validation split {split!r} of {root} has no video with frames to score (need >= 3 frames)")
    mean_j, mean_f = 100 * float(np.mean(object_j)), 100 * float(np.mean(object_f))
    return {"val_j": mean_j, "val_f": mean_f, "val_jf": (mean_j + mean_f) / 2, "val_videos": len(sequences)}
