"""Is query enhancement alive? A health check of the Enhanced Key Encoder's injection maps (§3.2).

The EKE injects one map per object query into the query key: map_n(x) = sigmoid(logit_n(x)). Query enhancement
can only matter if those maps say *where each instance is*. Four numbers tell whether they do:

``saturated``        fraction of map values below 0.05 or above 0.95. There the sigmoid's slope is under a fifth
                     of its maximum, so the key learns little through the maps. The literal §3.2 form
                     trained on the teaching world reached 98 % (all near 1).
``map_correlation``  mean |Pearson correlation| between the N maps of one frame (over pairs of maps that are not
                     constant). 1 = the N maps are one map repeated; instance-specific maps are far lower.
``mask_agreement``   mean Pearson correlation between map n and query n's own predicted mask probability
                     (pooled to the map's stride 16), over the queries that predict an object (objectness
                     1 - p(no object) > 0.5). High = each map follows its own instance.
``flatten ΔJ&F``     J&F with every map replaced by its own spatial mean at inference minus J&F as trained
                     (``flatten_delta_jf``). This is the causal test: a map that only shifts every key by the same
                     amount cannot matter to the L2 matching of Eq. (3), so flattening it costs nothing.

The first three come from :func:`map_statistics` on any batch of frames; training validation logs them
(``qe_saturated``, ``qe_map_correlation``, ``qe_mask_agreement`` in ``metrics.jsonl``); ``isvos-lite qe-health``
and notebook 05 report all four.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np
import torch
import torch.nn.functional as F

from isvos_lite.data.sequences import davis_sequences
from isvos_lite.eval.validation import validate_jf

__all__ = ["SATURATION_LOW", "SATURATION_HIGH", "map_statistics", "frames_of_split", "flattened_maps",
           "flatten_delta_jf"]

SATURATION_LOW, SATURATION_HIGH = 0.05, 0.95


def _pearson_matrix(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x (N, P) -> (N, N) Pearson correlations and (N,) mask of rows with non-zero variance."""
    centred = x - x.mean(dim=1, keepdim=True)
    norm = centred.norm(dim=1)                                                  # (N,)
    alive = norm > 1e-6 * max(1.0, float(x.abs().max()))
    unit = centred / norm.clamp_min(1e-12).unsqueeze(1)
    return unit @ unit.t(), alive


def _row_pearson(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-wise Pearson correlation of a, b (N, P) -> (N,), and the (N,) mask of rows where both vary."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    na, nb = a.norm(dim=1), b.norm(dim=1)
    valid = (na > 1e-6) & (nb > 1e-6)
    return (a * b).sum(1) / (na * nb).clamp_min(1e-12), valid


@torch.no_grad()
def map_statistics(model: torch.nn.Module, frames: torch.Tensor, batch_size: int = 4) -> dict:
    """Saturation, mutual correlation and mask agreement of the EKE's maps on ``frames``.

    Args:
        model: an ISVOS built with query enhancement.
        frames: (B, 3, H, W) uint8 or float in [0, 1]; H and W multiples of 32.

    Returns:
        {"qe_saturated", "qe_map_correlation", "qe_mask_agreement"} as floats in [0, 1] (agreement in [-1, 1]),
        "qe_key_change" (||key - key with the maps flattened|| / ||key||: how much the query key depends on the
        maps at all, a cheaper and finer signal than the J&F change), "qe_logit_mean" (mean map logit) and
        "qe_frames" (frames used). Leaves the model in eval mode.
    """
    if not getattr(model.cfg, "query_enhancement", False):
        raise ValueError("map_statistics needs a model with query enhancement (its key encoder has no injection maps)")
    if frames.dim() != 4 or frames.shape[1] != 3:
        raise ValueError(f"frames must have shape (B, 3, H, W), got {tuple(frames.shape)}")
    model.eval()
    device = next(model.parameters()).device
    saturated, values, correlations, agreements, logit_sum = 0, 0, [], [], 0.0
    key_change_sq, key_sq = 0.0, 0.0
    for start in range(0, frames.shape[0], batch_size):
        feats = model.encode_frame(frames[start:start + batch_size].to(device))
        with flattened_maps(model):                                             # the same frame, maps flattened
            flat_key = model.key_encoder(feats.res4, feats.instance["queries"], feats.instance["query_pos"],
                                         feats.instance["pred_masks"])["key"]
        key_change_sq += float((feats.key.float() - flat_key.float()).pow(2).sum())
        key_sq += float(feats.key.float().pow(2).sum())
        maps = feats.key_extras["instance_maps"].float()                        # (b, N, h, w)
        logits = feats.key_extras["map_logits"].float()                         # (b, N, h, w)
        masks = torch.sigmoid(feats.instance["pred_masks"].float())             # (b, N, H4, W4)
        masks = F.adaptive_avg_pool2d(masks, maps.shape[-2:])                   # (b, N, h, w)
        objectness = 1.0 - feats.instance["pred_logits"].float().softmax(-1)[..., -1]   # (b, N)
        saturated += int(((maps < SATURATION_LOW) | (maps > SATURATION_HIGH)).sum())
        values += maps.numel()
        logit_sum += float(logits.sum())
        for b in range(maps.shape[0]):
            flat = maps[b].flatten(1)                                           # (N, h*w)
            corr, alive = _pearson_matrix(flat)
            n_alive = int(alive.sum())
            if n_alive >= 2:
                sub = corr[alive][:, alive].abs()
                off_diagonal = sub.sum() - sub.diagonal().sum()
                correlations.append(float(off_diagonal) / (n_alive * (n_alive - 1)))
            else:
                correlations.append(1.0)        # no two varying maps: nothing instance-specific
            agreement, valid = _row_pearson(flat, masks[b].flatten(1))
            chosen = valid & (objectness[b] > 0.5)
            if bool(chosen.any()):
                agreements.append(float(agreement[chosen].mean()))
    return {"qe_saturated": saturated / max(values, 1),
            "qe_map_correlation": float(np.mean(correlations)),
            "qe_mask_agreement": float(np.mean(agreements)) if agreements else float("nan"),
            "qe_key_change": (key_change_sq / key_sq) ** 0.5 if key_sq > 0 else 0.0,
            "qe_logit_mean": logit_sum / max(values, 1),
            "qe_frames": int(frames.shape[0])}


def frames_of_split(root: str | os.PathLike, split: str = "val", num_videos: int = 8, per_video: int = 2) -> torch.Tensor:
    """(B, 3, H, W) uint8: ``per_video`` frames spread over each of the first ``num_videos`` videos of a split,
    cropped to multiples of 32 (all videos of the teaching world share one frame size)."""
    sequences = davis_sequences(root, split)[:num_videos]
    if not sequences:
        raise ValueError(f"split {split!r} of {root} has no videos")
    images = []
    for seq in sequences:
        for index in np.linspace(0, len(seq) - 1, per_video).round().astype(int):
            frame = seq.read_frame(int(index))                                  # (H, W, 3) uint8
            h, w = frame.shape[0] // 32 * 32, frame.shape[1] // 32 * 32
            images.append(torch.from_numpy(frame[:h, :w].copy()).permute(2, 0, 1))
    sizes = {tuple(i.shape) for i in images}
    if len(sizes) > 1:
        raise ValueError(f"the videos of {split!r} have different frame sizes {sorted(sizes)}; pass one video at a time")
    return torch.stack(images)


@contextlib.contextmanager
def flattened_maps(model: torch.nn.Module):
    """Within the block, the EKE injects each map's spatial mean instead of the map (the QE-health test)."""
    encoder = model.key_encoder
    before = encoder.flatten_maps
    encoder.flatten_maps = True
    try:
        yield model
    finally:
        encoder.flatten_maps = before


@torch.no_grad()
def flatten_delta_jf(model: torch.nn.Module, root: str | os.PathLike, split: str = "val",
                     num_videos: int | None = None) -> dict:
    """J&F on ``split`` as trained and with flattened maps; ``delta_jf`` = flattened - trained (negative = QE used)."""
    count = num_videos or len(davis_sequences(root, split))
    trained = validate_jf(model, root, split, count)
    with flattened_maps(model):
        flat = validate_jf(model, root, split, count)
    return {"split": split, "videos": trained["val_videos"], "jf": trained["val_jf"], "jf_flattened": flat["val_jf"],
            "delta_jf": flat["val_jf"] - trained["val_jf"]}
