"""The video-object-segmentation loss of ISVOS: bootstrapped cross-entropy + dice (§4.1 "Training").

"The VOS branch is supervised with bootstrapped cross entropy loss and dice loss following [73]" (§4.1), i.e.
the recipe of STCN / XMem:

* **Bootstrapped CE** on the soft-aggregated logits (background + one channel per object) against the index
  ground truth of every predicted frame. Early in training every pixel counts; later only the hardest
  fraction p of the pixels of each frame (their CE is averaged, the rest ignored):

      p(step) = 1                                            step < start
              = 1 − (1 − p_min) · (step − start)/(end − start)   start ≤ step ≤ end
              = p_min                                        step > end

  with p_min = 0.15, start = 20K and end = 70K at the paper scale (XMem's schedule; parameters here).
* **Dice** per object on the aggregated soft probabilities, 1 − (2Σpg + 1)/(Σp + Σg + 1), averaged over the
  real objects of the batch (padded object slots, ``selector`` = 0, are left out).

Both are computed per frame, summed over the T−1 predicted frames and averaged over the batch (XMem sums
its per-frame losses), and added with weight 1: ``loss_vos = loss_ce + loss_dice``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["bootstrap_fraction", "bootstrapped_cross_entropy", "object_dice_loss", "VOSLoss"]


def bootstrap_fraction(step: int, start: int, end: int, final_fraction: float = 0.15) -> float:
    """The fraction p of hardest pixels kept by the bootstrapped CE at ``step`` (see the module docstring)."""
    if step < start:
        return 1.0
    if step >= end:
        return final_fraction
    progress = (step - start) / (end - start)
    return 1.0 - (1.0 - final_fraction) * progress


def bootstrapped_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, fraction: float) -> torch.Tensor:
    """Per-frame mean CE over the hardest ``fraction`` of pixels.

    logits: (B, T, C, H, W)   labels: (B, T, H, W) int64 in [0, C)
    returns (B, T): for each frame, the mean of its top-⌊fraction·H·W⌋ pixel losses (at least one pixel)
    """
    B, T, C, H, W = logits.shape
    pixel_loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(0, 1), reduction="none")  # (B·T, H, W)
    pixel_loss = pixel_loss.view(B, T, H * W)
    if fraction >= 1.0:
        return pixel_loss.mean(-1)
    num_kept = max(1, int(H * W * fraction))
    return pixel_loss.topk(num_kept, dim=-1, sorted=False).values.mean(-1)              # (B, T)


def object_dice_loss(object_probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Dice 1 − (2Σpg + 1)/(Σp + Σg + 1) of every object in every frame.

    object_probs: (B, T, O, H, W) aggregated probabilities of the objects (no background channel)
    labels:       (B, T, H, W) index ground truth; object o (0-based) is label o + 1
    returns       (B, T, O)
    """
    O = object_probs.shape[2]
    object_ids = torch.arange(1, O + 1, device=labels.device).view(1, 1, O, 1, 1)
    truth = (labels[:, :, None] == object_ids).to(object_probs.dtype)                  # (B, T, O, H, W)
    numerator = 2.0 * (object_probs * truth).sum((-1, -2))                             # (B, T, O)
    denominator = object_probs.sum((-1, -2)) + truth.sum((-1, -2))                     # (B, T, O)
    return 1.0 - (numerator + 1.0) / (denominator + 1.0)


class VOSLoss(nn.Module):
    """Bootstrapped CE + dice on a clip's predicted frames, with the reference top-p schedule.

    ``forward(logits (B, T−1, O+1, H, W), labels (B, T−1, H, W) int64 in 0..O, selector (B, O), step)``
    returns ``{"loss_ce", "loss_dice", "loss_vos"}`` (scalar tensors) and ``"p"`` (the fraction in use, float).
    ``logits`` are the aggregated logits (channel 0 = background); channels of padded objects (selector 0)
    are excluded from the softmax, so their values do not matter.
    """

    def __init__(self, start_step: int = 20_000, end_step: int = 70_000, final_fraction: float = 0.15):
        super().__init__()
        if start_step < 0 or end_step < start_step:
            raise ValueError(f"VOSLoss: need 0 <= start_step <= end_step, got {start_step} and {end_step}")
        if not 0.0 < final_fraction <= 1.0:
            raise ValueError(f"VOSLoss: final_fraction must be in (0, 1], got {final_fraction}")
        self.start_step = start_step
        self.end_step = end_step
        self.final_fraction = final_fraction

    def fraction(self, step: int) -> float:
        return bootstrap_fraction(step, self.start_step, self.end_step, self.final_fraction)

    @staticmethod
    def check_inputs(logits: torch.Tensor, labels: torch.Tensor, selector: torch.Tensor) -> None:
        if logits.dim() != 5:
            raise ValueError(f"VOSLoss: logits must be (B, T-1, O+1, H, W), got {tuple(logits.shape)}")
        B, T, C, H, W = logits.shape
        if tuple(labels.shape) != (B, T, H, W):
            raise ValueError(f"VOSLoss: labels must be (B, T-1, H, W) = {(B, T, H, W)}, got {tuple(labels.shape)}")
        if tuple(selector.shape) != (B, C - 1):
            raise ValueError(f"VOSLoss: selector must be (B, O) = {(B, C - 1)}, got {tuple(selector.shape)}")
        if labels.dtype != torch.int64:
            raise ValueError(f"VOSLoss: labels must be int64 class indices, got {labels.dtype}")
        # every label must name the background or a real object of its own sample
        valid_label = torch.cat([torch.ones_like(selector[:, :1], dtype=torch.bool), selector.bool()], dim=1)  # (B, O+1)
        if labels.min() < 0 or labels.max() >= C:
            raise ValueError(f"VOSLoss: labels must lie in 0..{C - 1} (background + {C - 1} objects), "
                             f"got values in {labels.min().item()}..{labels.max().item()}")
        used = torch.zeros(B, C, dtype=torch.bool, device=labels.device)
        used.scatter_(1, labels.reshape(B, -1), True)
        if (used & ~valid_label.to(used.device)).any():
            raise ValueError("VOSLoss: labels name an object whose selector is 0 (a padded slot); "
                             "pad objects only after the real ones and never label them")

    def forward(self, logits: torch.Tensor, labels: torch.Tensor, selector: torch.Tensor,
                step: int) -> dict:
        self.check_inputs(logits, labels, selector)
        selector = selector.to(logits.device, torch.float32)                                # (B, O)
        real_channel = torch.cat([torch.ones_like(selector[:, :1]), selector], dim=1)       # (B, O+1)
        # padded objects leave the softmax: their logits become -inf (probability exactly 0)
        logits = logits.float().masked_fill(real_channel[:, None, :, None, None] == 0, float("-inf"))

        fraction = self.fraction(step)
        loss_ce = bootstrapped_cross_entropy(logits, labels, fraction).sum(1).mean()        # Σ_t, mean over B

        object_probs = logits.softmax(dim=2)[:, :, 1:]                                      # (B, T-1, O, H, W)
        dice = object_dice_loss(object_probs, labels)                                       # (B, T-1, O)
        weight = selector[:, None, :].expand_as(dice)                                       # (B, T-1, O)
        num_real = selector.sum().clamp(min=1.0)
        loss_dice = (dice * weight).sum() / num_real                                        # Σ_t, mean over objects
        return {"loss_ce": loss_ce, "loss_dice": loss_dice, "loss_vos": loss_ce + loss_dice, "p": fraction}
