"""Multi-object soft aggregation, as in STCN (https://github.com/hkchengrex/STCN) and XMem.

The VOS decoder (§3.3) predicts every object independently: one sigmoid probability p_o per object.
Soft aggregation merges them into a single distribution over {background, object 1..O} per pixel:

    p_bg = prod_o (1 - p_o)                          background = "no object claims the pixel"
    p    = clamp([p_bg, p_1, ..., p_O], 1e-7, 1 - 1e-7)
    logit = log(p / (1 - p))                          the cross-entropy input in training
    probs = softmax(logit) over the O + 1 channels    the prediction; probs[:, 1:] feed the value encoder

A larger p_o always means a larger share for object o, and the O + 1 probabilities sum to 1.
"""

from __future__ import annotations

import torch

__all__ = ["aggregate"]

_EPS = 1e-7


def aggregate(prob: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft-aggregate per-object probabilities (B, O, H, W) into background + objects.

    Args:
        prob: (B, O, H, W) independent per-object probabilities in [0, 1] (O may be 0).

    Returns:
        logits (B, O+1, H, W) and probs (B, O+1, H, W) = softmax(logits, dim=1), both float32;
        channel 0 is background.
    """
    if prob.dim() != 4:
        raise ValueError(f"aggregate expects per-object probabilities of shape (B, O, H, W), got {tuple(prob.shape)}")
    if not prob.is_floating_point():
        raise ValueError(f"aggregate expects float probabilities in [0, 1], got dtype {prob.dtype}")
    prob = prob.float()                                                  # 1 - 1e-7 rounds to 1 in fp16
    background = torch.prod(1 - prob, dim=1, keepdim=True)             # (B, 1, H, W)
    stacked = torch.cat([background, prob], dim=1).clamp(_EPS, 1 - _EPS)  # (B, O+1, H, W)
    logits = torch.log(stacked / (1 - stacked))                          # (B, O+1, H, W)
    return logits, torch.softmax(logits, dim=1)
