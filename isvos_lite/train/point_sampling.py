"""Point sampling for mask losses: PointRend importance sampling, as used by Mask2Former.

The instance-branch mask losses of ISVOS are Mask2Former's (§3.1, §4.1 "Training": "mask loss consists of
weighted binary cross-entropy loss and dice loss"). Mask2Former does not compare whole masks: it compares them
at a few thousand points (Mask2Former §3.3, "Improving training efficiency"), 12,544 per mask at the paper
scale. Points are drawn in normalised image coordinates, so a stride-4 prediction and a full-resolution target
are sampled at the same physical places without resizing either.

Coordinates are (x, y) in [0, 1]. ``point_sample`` maps them to ``grid_sample``'s [-1, 1] with
``align_corners=False``, under which the centre of pixel (i, j) of an H x W map is ((j + 0.5) / W, (i + 0.5) / H).
One deliberate difference from detectron2's helper: points in the outer half-pixel of the image are read with
``padding_mode="border"`` (the edge value) instead of being blended with zeros, so a mask that is 1 up to its
edge samples as 1 everywhere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["point_sample", "uncertainty", "sample_uncertain_points", "pixel_centre_coords"]


def point_sample(maps: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinearly read ``maps`` at normalised points.

    maps:   (R, C, H, W)
    coords: (R, P, 2) with (x, y) in [0, 1]
    returns (R, C, P)
    """
    if maps.dim() != 4:
        raise ValueError(f"point_sample: maps must be (R, C, H, W), got shape {tuple(maps.shape)}")
    if coords.dim() != 3 or coords.shape[-1] != 2 or coords.shape[0] != maps.shape[0]:
        raise ValueError(
            f"point_sample: coords must be (R, P, 2) with R = {maps.shape[0]}, got shape {tuple(coords.shape)}"
        )
    grid = 2.0 * coords.to(maps.dtype) - 1.0                       # (R, P, 2) in [-1, 1]
    sampled = F.grid_sample(maps, grid[:, :, None, :], mode="bilinear",
                            padding_mode="border", align_corners=False)  # (R, C, P, 1)
    return sampled[..., 0]                                          # (R, C, P)


def uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """PointRend's uncertainty of a binary logit: −|logit| (highest on the decision boundary, logit = 0)."""
    return -logits.abs()


def sample_uncertain_points(
    mask_logits: torch.Tensor,
    num_points: int,
    oversample_ratio: float = 3.0,
    importance_ratio: float = 0.75,
) -> torch.Tensor:
    """Choose points where a mask prediction is least certain, plus some random ones (PointRend, Mask2Former §3.3).

    1. draw ``oversample_ratio · num_points`` uniform random points and read the logits there;
    2. keep the ``importance_ratio · num_points`` points whose logit is closest to 0;
    3. fill up to ``num_points`` with fresh uniform random points.

    mask_logits: (R, 1, H, W) one mask logit map per row (the points are chosen without gradient)
    returns      (R, num_points, 2) coordinates (x, y) in [0, 1]
    """
    if mask_logits.dim() != 4 or mask_logits.shape[1] != 1:
        raise ValueError(f"sample_uncertain_points: mask_logits must be (R, 1, H, W), got {tuple(mask_logits.shape)}")
    if num_points < 1:
        raise ValueError(f"sample_uncertain_points: num_points must be >= 1, got {num_points}")
    if oversample_ratio < 1:
        raise ValueError(f"sample_uncertain_points: oversample_ratio must be >= 1, got {oversample_ratio}")
    if not 0.0 <= importance_ratio <= 1.0:
        raise ValueError(f"sample_uncertain_points: importance_ratio must be in [0, 1], got {importance_ratio}")

    rows = mask_logits.shape[0]
    device = mask_logits.device
    num_candidates = int(num_points * oversample_ratio)
    num_uncertain = int(num_points * importance_ratio)
    num_random = num_points - num_uncertain

    with torch.no_grad():
        candidates = torch.rand(rows, num_candidates, 2, device=device)                  # (R, kP, 2)
        candidate_logits = point_sample(mask_logits.detach().float(), candidates)[:, 0]  # (R, kP)
        most_uncertain = uncertainty(candidate_logits).topk(num_uncertain, dim=1).indices  # (R, P_u)
        chosen = torch.gather(candidates, 1, most_uncertain[..., None].expand(-1, -1, 2))  # (R, P_u, 2)
        fresh = torch.rand(rows, num_random, 2, device=device)                           # (R, P_r, 2)
        return torch.cat([chosen, fresh], dim=1)                                          # (R, P, 2)


def pixel_centre_coords(height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The centres of every pixel of an H x W map, row-major, as normalised (x, y): (H·W, 2).

    Sampling a map of that size at these points returns its pixels exactly (useful in tests and notebooks).
    """
    ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")        # (H, W) each
    return torch.stack([grid_x, grid_y], dim=-1).reshape(-1, 2)  # (H·W, 2)
