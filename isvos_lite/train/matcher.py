"""Hungarian matching of instance queries to ground-truth instances (Mask2Former, as used by ISVOS §3.1, §4.1).

The instance branch predicts N (class, mask) pairs per image; an image has M ≤ N ground-truth instances. Before
the loss can compare them, each ground-truth instance is assigned to one distinct query by minimising the
total cost (the DETR set-prediction recipe, with Mask2Former's costs):

    C[q, m] = 2 · (−p_q(class_m)) + 5 · BCE(mask_q, mask_m) + 5 · dice(mask_q, mask_m)

where p_q is the softmax class distribution of query q and the mask terms are measured at ``num_points``
uniformly random points shared by every prediction and target of that image (12,544 at the paper scale).
The assignment is solved exactly by ``scipy.optimize.linear_sum_assignment``. Queries left unassigned are
trained towards the "no object" class by the criterion.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from isvos_lite.train.point_sampling import point_sample

__all__ = ["pairwise_sigmoid_bce", "pairwise_dice", "HungarianMatcher"]


def pairwise_sigmoid_bce(pred_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy over points between every prediction and every target.

    pred_logits: (N, P) mask logits at the points
    target:      (M, P) target values in [0, 1] at the same points
    returns      (N, M)
    """
    num_points = pred_logits.shape[1]
    loss_if_one = F.binary_cross_entropy_with_logits(pred_logits, torch.ones_like(pred_logits), reduction="none")
    loss_if_zero = F.binary_cross_entropy_with_logits(pred_logits, torch.zeros_like(pred_logits), reduction="none")
    # BCE(x, t) = t·loss_if_one(x) + (1 − t)·loss_if_zero(x): linear in t, so all pairs are two matrix products
    cost = loss_if_one @ target.T + loss_if_zero @ (1.0 - target).T   # (N, M)
    return cost / num_points


def pairwise_dice(pred_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Dice loss 1 − (2Σpg + 1)/(Σp + Σg + 1) between every prediction (after sigmoid) and every target.

    pred_logits: (N, P), target: (M, P) -> (N, M)
    """
    prob = pred_logits.sigmoid()                                            # (N, P)
    numerator = 2.0 * prob @ target.T                                       # (N, M)
    denominator = prob.sum(-1)[:, None] + target.sum(-1)[None, :]           # (N, M)
    return 1.0 - (numerator + 1.0) / (denominator + 1.0)


class HungarianMatcher:
    """Assigns each ground-truth instance of an image to one query (Mask2Former's matcher).

    Called with the IS decoder's outputs and the targets of a batch, it returns for every image a pair
    ``(pred_index, target_index)`` of int64 tensors of equal length min(N, M): query ``pred_index[k]``
    is matched to target ``target_index[k]``. An image without targets gives two empty tensors.
    """

    def __init__(self, class_weight: float = 2.0, mask_weight: float = 5.0, dice_weight: float = 5.0,
                 num_points: int = 12544):
        if num_points < 1:
            raise ValueError(f"HungarianMatcher: num_points must be >= 1, got {num_points}")
        if min(class_weight, mask_weight, dice_weight) < 0:
            raise ValueError("HungarianMatcher: cost weights must be >= 0")
        self.class_weight = class_weight
        self.mask_weight = mask_weight
        self.dice_weight = dice_weight
        self.num_points = num_points

    def cost_matrix(self, class_logits: torch.Tensor, mask_logits: torch.Tensor, labels: torch.Tensor,
                    target_masks: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """The matching cost of one image, with the mask terms read at the given points.

        class_logits: (N, K+1)    mask_logits: (N, H4, W4)
        labels:       (M,) int64  target_masks: (M, H, W) in [0, 1] (any resolution)
        coords:       (P, 2) points (x, y) in [0, 1], shared by all predictions and targets
        returns       (N, M)
        """
        num_queries, num_targets = mask_logits.shape[0], labels.shape[0]
        class_prob = class_logits.float().softmax(-1)                                          # (N, K+1)
        cost_class = -class_prob[:, labels]                                                    # (N, M)

        pred_points = point_sample(mask_logits[:, None].float(),
                                   coords[None].expand(num_queries, -1, -1))[:, 0]              # (N, P)
        target_points = point_sample(target_masks[:, None].float(),
                                     coords[None].expand(num_targets, -1, -1))[:, 0]            # (M, P)
        cost_mask = pairwise_sigmoid_bce(pred_points, target_points)                            # (N, M)
        cost_dice = pairwise_dice(pred_points, target_points)                                   # (N, M)
        return self.class_weight * cost_class + self.mask_weight * cost_mask + self.dice_weight * cost_dice

    @staticmethod
    def assign(cost: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Minimum-cost assignment of the columns (targets) to distinct rows (queries) of an (N, M) cost."""
        cost_np = cost.detach().cpu().double().numpy()
        if not np.isfinite(cost_np).all():
            raise ValueError("HungarianMatcher: the matching cost contains NaN or inf; "
                             "the model's class or mask predictions are not finite (lower the learning rate?)")
        rows, cols = linear_sum_assignment(cost_np)
        return torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)

    @torch.no_grad()
    def __call__(self, outputs: dict, targets: list[dict]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """outputs: {"pred_logits": (B, N, K+1), "pred_masks": (B, N, H4, W4)};
        targets: B dicts {"labels": (M,) int64, "masks": (M, H, W)}."""
        class_logits, mask_logits = outputs["pred_logits"], outputs["pred_masks"]
        if len(targets) != class_logits.shape[0]:
            raise ValueError(f"HungarianMatcher: {len(targets)} targets for a batch of {class_logits.shape[0]} images")
        matches = []
        for b, target in enumerate(targets):
            labels = target["labels"]
            if labels.numel() == 0:
                empty = torch.zeros(0, dtype=torch.int64)
                matches.append((empty, empty.clone()))
                continue
            coords = torch.rand(self.num_points, 2, device=mask_logits.device)   # (P, 2), shared in this image
            cost = self.cost_matrix(class_logits[b], mask_logits[b], labels, target["masks"], coords)
            matches.append(self.assign(cost))
        return matches
