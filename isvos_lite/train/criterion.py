"""The instance-segmentation loss of ISVOS: Mask2Former's set criterion (§3.1, §4.1 "Training").

"The IS branch is supervised with a combination of mask loss and classification loss, where the mask loss
consists of weighted binary cross-entropy loss and dice loss" (§4.1), with "an auxiliary loss added to every
intermediate Transformer decoder layer" (§3.1, Eq. 1). Following Mask2Former:

1. match queries to ground-truth instances (``HungarianMatcher``), separately for every decoder layer's output;
2. classification: cross-entropy over K+1 classes for *every* query; unmatched queries are trained towards
   "no object", whose class weight is 0.1 (others 1);
3. masks, for matched queries only: binary cross-entropy and dice at ``num_points`` importance-sampled points
   (``sample_uncertain_points``), each summed over masks and divided by the number of target masks in the
   batch (averaged over DDP ranks, at least 1);
4. total = 2 · CE + 5 · BCE + 5 · dice, summed over the final output and every auxiliary output.

With a mask-IoU head (``ModelConfig.mask_iou_head``, not in the paper) the final output also has
``pred_iou_logits``; ``loss_mask_iou`` (weight ``iou_weight``) is the mean squared error between each query's
predicted IoU and its mask's actual IoU with the ground-truth instance it overlaps most (SAM's IoU head is trained
the same way), over every query: strays learn a low IoU, good masks a high one (:func:`mask_iou_targets`).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from isvos_lite.model.instance_head import pairwise_mask_iou
from isvos_lite.train.matcher import HungarianMatcher
from isvos_lite.train.point_sampling import point_sample, sample_uncertain_points

__all__ = ["sigmoid_bce_loss", "dice_loss", "SetCriterion"]


def sigmoid_bce_loss(pred_logits: torch.Tensor, target: torch.Tensor, num_masks: float) -> torch.Tensor:
    """Mean BCE over points, summed over masks, divided by ``num_masks``. pred_logits, target: (R, P)."""
    per_point = F.binary_cross_entropy_with_logits(pred_logits, target, reduction="none")  # (R, P)
    return per_point.mean(1).sum() / num_masks


def dice_loss(pred_logits: torch.Tensor, target: torch.Tensor, num_masks: float) -> torch.Tensor:
    """Dice 1 − (2Σpg + 1)/(Σp + Σg + 1) per mask, summed over masks, divided by ``num_masks``. (R, P) each."""
    prob = pred_logits.sigmoid()                                         # (R, P)
    numerator = 2.0 * (prob * target).sum(-1)                           # (R,)
    denominator = prob.sum(-1) + target.sum(-1)                          # (R,)
    return (1.0 - (numerator + 1.0) / (denominator + 1.0)).sum() / num_masks


@torch.no_grad()
def mask_iou_targets(mask_logits: torch.Tensor, targets: list[dict]) -> torch.Tensor:
    """For every query: the IoU of its binary mask (logit > 0) with the ground-truth instance it overlaps most, at
    the mask resolution (targets area-resized to it, > 0.5). mask_logits (B, N, h, w) -> (B, N) in [0, 1]."""
    B, N, h, w = mask_logits.shape
    out = mask_logits.new_zeros(B, N, dtype=torch.float32)
    for b, target in enumerate(targets):
        if len(target["labels"]) == 0:
            continue
        gt = F.interpolate(target["masks"][None].float().to(mask_logits.device), size=(h, w), mode="area")[0] > 0.5
        out[b] = pairwise_mask_iou(mask_logits[b] > 0, gt).max(dim=1).values    # (N, M) -> (N,)
    return out


class SetCriterion(nn.Module):
    """Mask2Former's loss for the IS branch, with deep supervision over ``outputs["aux_outputs"]``.

    Call it with the IS decoder's outputs
    ``{"pred_logits": (B, N, K+1), "pred_masks": (B, N, H4, W4), "aux_outputs": [dicts of the same two keys]}``
    and a list of B targets ``{"labels": (M,) int64 in [0, K), "masks": (M, H, W) float in [0, 1]}``.
    It returns named terms ``loss_ce``, ``loss_mask``, ``loss_dice`` (final output) and ``loss_ce_0``,
    ``loss_mask_0``, … for the auxiliary outputs (unweighted), plus ``loss_is``, the weighted total.
    """

    def __init__(self, num_classes: int, matcher: HungarianMatcher | None = None, class_weight: float = 2.0,
                 mask_weight: float = 5.0, dice_weight: float = 5.0, no_object_weight: float = 0.1,
                 num_points: int = 12544, oversample_ratio: float = 3.0, importance_ratio: float = 0.75,
                 iou_weight: float = 1.0):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"SetCriterion: num_classes must be >= 1, got {num_classes}")
        if num_points < 1:
            raise ValueError(f"SetCriterion: num_points must be >= 1, got {num_points}")
        self.num_classes = num_classes
        self.matcher = matcher if matcher is not None else HungarianMatcher(
            class_weight=class_weight, mask_weight=mask_weight, dice_weight=dice_weight, num_points=num_points)
        self.weights = {"loss_ce": class_weight, "loss_mask": mask_weight, "loss_dice": dice_weight,
                        "loss_mask_iou": iou_weight}
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_ratio = importance_ratio
        class_weights = torch.ones(num_classes + 1)
        class_weights[-1] = no_object_weight                 # index K is "no object"
        self.register_buffer("class_weights", class_weights, persistent=False)

    # --- the three terms for one decoder output ------------------------------------------------

    def classification_loss(self, class_logits: torch.Tensor, targets: list[dict], matches) -> torch.Tensor:
        """Weighted CE over all queries; unmatched queries target "no object" (index K). class_logits: (B, N, K+1)."""
        B, N, _ = class_logits.shape
        target_classes = torch.full((B, N), self.num_classes, dtype=torch.int64, device=class_logits.device)
        for b, (pred_index, target_index) in enumerate(matches):
            labels = targets[b]["labels"].to(class_logits.device)                       # (M,)
            target_classes[b, pred_index.to(labels.device)] = labels[target_index.to(labels.device)]
        return F.cross_entropy(class_logits.float().transpose(1, 2), target_classes,
                               weight=self.class_weights.to(class_logits.device))

    def mask_losses(self, mask_logits: torch.Tensor, targets: list[dict], matches,
                    num_masks: float) -> tuple[torch.Tensor, torch.Tensor]:
        """BCE and dice of matched masks at importance-sampled points. mask_logits: (B, N, H4, W4)."""
        matched_pred = torch.cat([mask_logits[b, pred_index.to(mask_logits.device)]
                                  for b, (pred_index, _) in enumerate(matches)])          # (R, H4, W4)
        if matched_pred.shape[0] == 0:
            zero = mask_logits.sum() * 0.0            # keeps the graph connected (DDP needs every parameter used)
            return zero, zero.clone()
        matched_target = torch.cat([targets[b]["masks"][target_index.to(targets[b]["masks"].device)]
                                    for b, (_, target_index) in enumerate(matches)])       # (R, H, W)
        matched_pred = matched_pred[:, None].float()                                       # (R, 1, H4, W4)
        matched_target = matched_target[:, None].to(matched_pred)                          # (R, 1, H, W)

        coords = sample_uncertain_points(matched_pred, self.num_points,
                                         self.oversample_ratio, self.importance_ratio)      # (R, P, 2)
        with torch.no_grad():
            target_points = point_sample(matched_target, coords)[:, 0]                     # (R, P)
        pred_points = point_sample(matched_pred, coords)[:, 0]                             # (R, P)
        return (sigmoid_bce_loss(pred_points, target_points, num_masks),
                dice_loss(pred_points, target_points, num_masks))

    def single_output_losses(self, output: dict, targets: list[dict], num_masks: float) -> dict[str, torch.Tensor]:
        matches = self.matcher(output, targets)
        loss_mask, loss_dice = self.mask_losses(output["pred_masks"], targets, matches, num_masks)
        return {"loss_ce": self.classification_loss(output["pred_logits"], targets, matches),
                "loss_mask": loss_mask, "loss_dice": loss_dice}

    # --- the whole criterion -------------------------------------------------------------------

    def count_target_masks(self, targets: list[dict], device: torch.device) -> float:
        """Target masks in the batch, averaged over DDP ranks when distributed, clamped to >= 1."""
        count = torch.tensor(float(sum(len(t["labels"]) for t in targets)), device=device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(count)
            count = count / dist.get_world_size()
        return max(count.item(), 1.0)

    def check_inputs(self, outputs: dict, targets: list[dict]) -> None:
        class_logits, mask_logits = outputs["pred_logits"], outputs["pred_masks"]
        if class_logits.dim() != 3 or class_logits.shape[-1] != self.num_classes + 1:
            raise ValueError(f"SetCriterion: pred_logits must be (B, N, {self.num_classes + 1}) for "
                             f"{self.num_classes} classes + no-object, got {tuple(class_logits.shape)}")
        if mask_logits.dim() != 4 or mask_logits.shape[:2] != class_logits.shape[:2]:
            raise ValueError(f"SetCriterion: pred_masks must be (B, N, H, W) matching pred_logits, "
                             f"got {tuple(mask_logits.shape)}")
        if len(targets) != class_logits.shape[0]:
            raise ValueError(f"SetCriterion: got {len(targets)} targets for a batch of {class_logits.shape[0]} images")
        for i, target in enumerate(targets):
            labels, masks = target["labels"], target["masks"]
            if labels.dim() != 1 or masks.dim() != 3 or masks.shape[0] != labels.shape[0]:
                raise ValueError(f"SetCriterion: targets[{i}] needs labels (M,) and masks (M, H, W), got "
                                 f"{tuple(labels.shape)} and {tuple(masks.shape)}")
            if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
                raise ValueError(f"SetCriterion: targets[{i}]['labels'] has class ids {sorted(set(labels.tolist()))} "
                                 f"but the model has {self.num_classes} classes (0..{self.num_classes - 1}); "
                                 "remap the dataset's categories or set num_classes in the model config")

    def forward(self, outputs: dict, targets: list[dict]) -> dict[str, torch.Tensor]:
        self.check_inputs(outputs, targets)
        num_masks = self.count_target_masks(targets, outputs["pred_logits"].device)
        # the final prediction (no suffix) and every decoder layer's auxiliary prediction (suffix _0, _1, ...)
        supervised = [("", outputs)] + [(f"_{i}", aux) for i, aux in enumerate(outputs.get("aux_outputs", []))]
        losses: dict[str, torch.Tensor] = {}
        total = outputs["pred_logits"].new_zeros((), dtype=torch.float32)
        for suffix, output in supervised:
            for name, value in self.single_output_losses(output, targets, num_masks).items():
                losses[name + suffix] = value
                total = total + self.weights[name] * value
        if "pred_iou_logits" in outputs:                   # the optional mask-IoU head, final output only
            target = mask_iou_targets(outputs["pred_masks"].detach().float(), targets)
            losses["loss_mask_iou"] = F.mse_loss(outputs["pred_iou_logits"].float().sigmoid(), target)
            total = total + self.weights["loss_mask_iou"] * losses["loss_mask_iou"]
        losses["loss_is"] = total
        return losses
