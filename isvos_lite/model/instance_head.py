"""IS decoder (§3.3, Fig. 3): turns object queries into class scores and mask logits.

Each query q (after the decoder's LayerNorm) predicts
  * class logits: Linear(C -> K+1), the last class meaning "no object";
  * a mask embedding e = MLP(q) (3 layers, ReLU between) whose dot product with the per-pixel
    embeddings F_pixel gives the mask logits: m[h, w] = <e, F_pixel[:, h, w]>.
The transformer decoder calls this head after every layer (deep supervision, and the masks become the
next layer's attention mask, Eq. (1)). The head is auxiliary: ISVOS drops it at inference (§3.3).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MLP", "InstanceHead", "postprocess_instances", "pairwise_mask_iou"]


class MLP(nn.Module):
    """``num_layers`` Linear layers with ReLU between them (not after the last); submodules ``layers.0..``."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class InstanceHead(nn.Module):
    """Class head + mask-embedding MLP (Mask2Former's prediction heads, §3.3).

    ``forward(queries (B, N, C), mask_features (B, E, H4, W4))`` ->
    ``(class_logits (B, N, K+1), mask_logits (B, N, H4, W4))``. With ``mask_iou_head``, ``predict_iou(queries)``
    adds a third MLP that scores each query's mask by its predicted IoU (used only to rank instance masks).
    """

    def __init__(self, hidden_dim: int, num_classes: int, mask_dim: int, mask_iou_head: bool = False) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, num_layers=3)
        # optional (not in the paper): MLP(q) -> logit of the IoU of q's mask with the instance it covers
        self.iou_embed = MLP(hidden_dim, hidden_dim, 1, num_layers=3) if mask_iou_head else None

    def predict_iou(self, queries: torch.Tensor) -> torch.Tensor:
        """(B, N, C) normed final queries -> (B, N) logits of each query mask's predicted IoU (sigmoid: in [0, 1])."""
        if self.iou_embed is None:
            raise RuntimeError("this model has no mask-IoU head (ModelConfig.mask_iou_head=False)")
        return self.iou_embed(queries)[..., 0]

    def forward(self, queries: torch.Tensor, mask_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if mask_features.dim() != 4 or mask_features.shape[1] != self.mask_embed.layers[-1].out_features:
            raise ValueError(f"mask_features must be (B, {self.mask_embed.layers[-1].out_features}, H, W), "
                             f"got {tuple(mask_features.shape)}")
        class_logits = self.class_embed(queries)                                 # (B, N, K+1)
        mask_embedding = self.mask_embed(queries)                                # (B, N, E)
        mask_logits = torch.einsum("bne,behw->bnhw", mask_embedding, mask_features)  # (B, N, H4, W4)
        return class_logits, mask_logits


@torch.no_grad()
def postprocess_instances(class_logits: torch.Tensor, mask_logits: torch.Tensor, top_k: int,
                          output_size: tuple[int, int] | None = None) -> list[dict[str, torch.Tensor]]:
    """Mask2Former's instance inference: from per-query predictions to a ranked list of instances.

    Per image: softmax over the K+1 classes, drop "no object"; take the ``top_k`` best (query, class)
    pairs out of N·K; the mask of a pair is its query's logit > 0 (after optional bilinear resizing to
    ``output_size``); its score = class probability x mean sigmoid inside the mask.

    Args:
        class_logits: (B, N, K+1); mask_logits: (B, N, h, w); top_k: how many instances to keep
            (capped at N·K); output_size: optional (H, W) to resize the masks to.

    Returns:
        one dict per image with ``scores`` (k,), ``labels`` (k,) in 0..K-1, ``masks`` (k, H, W) bool
        and ``query_index`` (k,), sorted by decreasing score.
    """
    if class_logits.dim() != 3 or mask_logits.dim() != 4 or class_logits.shape[:2] != mask_logits.shape[:2]:
        raise ValueError(f"class_logits (B, N, K+1) and mask_logits (B, N, h, w) must agree on B and N, got "
                         f"{tuple(class_logits.shape)} and {tuple(mask_logits.shape)}")
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if output_size is not None:
        mask_logits = F.interpolate(mask_logits, size=tuple(output_size), mode="bilinear", align_corners=False)
    B, N, K1 = class_logits.shape
    K = K1 - 1
    results = []
    for b in range(B):
        probs = class_logits[b].softmax(-1)[:, :K]                                # (N, K)
        scores, flat_index = probs.flatten().topk(min(top_k, N * K), sorted=True)
        query_index, labels = flat_index // K, flat_index % K
        logits = mask_logits[b, query_index]                                     # (k, H, W)
        masks = logits > 0
        mask_quality = (logits.sigmoid() * masks).flatten(1).sum(1) / (masks.flatten(1).sum(1) + 1e-6)
        final = scores * mask_quality
        order = final.argsort(descending=True)
        results.append({"scores": final[order], "labels": labels[order], "masks": masks[order],
                         "query_index": query_index[order]})
    return results


def pairwise_mask_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of every pair of binary masks: a (n, H, W), b (m, H, W) bool -> (n, m); 0 where both masks are empty."""
    a, b = a.flatten(1).float(), b.flatten(1).float()                           # (n, HW), (m, HW)
    inter = a @ b.T                                                              # (n, m)
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter))
