"""Transformer decoder of the IS branch with masked attention (§3.1, Eq. (1); Mask2Former).

N learnable object queries q_ins gather instance evidence from the pyramid [P_s32, P_s16, P_s8].
Layer l (l = 0..L-1) reads level l mod 3 (s32, s16, s8, s32, ...) and does, each step with a residual
and a LayerNorm after it (post-norm):

  1. masked cross-attention, Eq. (1): q_l = softmax(M_{l-1} + q_l k_lᵀ) v_l + q_{l-1},
     where M_{l-1} = -inf wherever the previous prediction's mask (resized to this level) has
     sigmoid < 0.5, per query; a query whose mask is empty everywhere attends everywhere instead;
  2. self-attention among the queries;
  3. FFN.

Queries use (content ``query_feat`` + positional ``query_embed``); the keys use the feature + sine position,
and every level's feature gets its learned ``level_embed``. Predictions (class + mask, ``InstanceHead``)
come from ``decoder_norm(queries)`` before layer 0 and after every layer: L + 1 sets; the last is the
output, the L earlier ones are the auxiliary outputs for deep supervision. The final normed queries are
q̃_ins, which the Enhanced Key Encoder reads (§3.2, Eq. (2)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from isvos_lite.model.instance_head import InstanceHead
from isvos_lite.model.position_encoding import PositionEmbeddingSine

__all__ = ["SelfAttentionLayer", "CrossAttentionLayer", "FFNLayer", "MaskedTransformerDecoder",
           "attention_mask_from_logits"]


class SelfAttentionLayer(nn.Module):
    """Queries attend to each other: q = k = x + query_pos, v = x; residual, then LayerNorm."""

    def __init__(self, d_model: int, num_heads: int) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, num_heads, batch_first=True)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
        q = k = x + query_pos                                                     # (B, N, C)
        return self.norm(x + self.self_attn(q, k, x, need_weights=False)[0])


class CrossAttentionLayer(nn.Module):
    """Masked cross-attention, Eq. (1): queries attend to one pyramid level; residual, then LayerNorm.

    ``attn_mask`` (B·heads, N, S) bool, True = this query may not look at this pixel.
    """

    def __init__(self, d_model: int, num_heads: int) -> None:
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(d_model, num_heads, batch_first=True)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, attn_mask: torch.Tensor | None,
                pos: torch.Tensor, query_pos: torch.Tensor) -> torch.Tensor:
        # x: (B, N, C) queries; memory, pos: (B, S, C) one level's pixels
        attended = self.multihead_attn(x + query_pos, memory + pos, memory, attn_mask=attn_mask,
                                       need_weights=False)[0]
        return self.norm(x + attended)


class FFNLayer(nn.Module):
    """Linear -> ReLU -> Linear; residual, then LayerNorm."""

    def __init__(self, d_model: int, ffn_dim: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(d_model, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, d_model)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.linear2(F.relu(self.linear1(x))))


def attention_mask_from_logits(mask_logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """M_{l-1} of Eq. (1) as a boolean "blocked" mask: resize the mask logits (B, N, H4, W4) bilinearly to
    ``size`` (the next layer's level), block pixels with sigmoid < 0.5, then unblock every query whose
    whole row is blocked (it would otherwise attend to nothing). Detached. Returns (B, N, h·w) bool."""
    resized = F.interpolate(mask_logits.detach(), size=size, mode="bilinear", align_corners=False)
    blocked = resized.sigmoid().flatten(2) < 0.5                                 # (B, N, h*w)
    all_blocked = blocked.all(dim=-1, keepdim=True)                              # (B, N, 1)
    return blocked & ~all_blocked


class MaskedTransformerDecoder(nn.Module):
    """Mask2Former's multi-scale masked-attention decoder (§3.1, Eq. (1)). See the module docstring.

    Args:
        hidden_dim: C_d; num_queries: N; num_layers: decoder layers (paper: 9); num_heads; ffn_dim (2048);
        num_classes: K (the class head has K+1 outputs); mask_dim: C_eps of F_pixel;
        num_levels: pyramid levels cycled through (3: s32, s16, s8).

    ``forward(multi_scale [P_s32, P_s16, P_s8] each (B, C_d, h_l, w_l), mask_features (B, C_eps, H4, W4))``
    returns a dict:
        queries (B, N, C) q̃_ins = decoder_norm(final queries); query_pos (B, N, C);
        pred_logits (B, N, K+1) and pred_masks (B, N, H4, W4): the final prediction;
        aux_outputs: ``num_layers`` dicts {pred_logits, pred_masks}, the earlier predictions in order;
        pred_iou_logits (B, N), only with ``mask_iou_head``: each final mask's predicted IoU (logit);
        attn_masks: ``num_layers`` bool tensors (B, N, h_l·w_l), the mask each layer used (True = blocked).
    """

    def __init__(self, hidden_dim: int, num_queries: int, num_layers: int, num_heads: int, ffn_dim: int,
                 num_classes: int, mask_dim: int, num_levels: int = 3, mask_iou_head: bool = False) -> None:
        super().__init__()
        if hidden_dim % num_heads or hidden_dim % 2:
            raise ValueError(f"hidden_dim ({hidden_dim}) must be even and divisible by num_heads ({num_heads})")
        if min(num_queries, num_layers, num_levels) < 1:
            raise ValueError(f"num_queries, num_layers and num_levels must be >= 1, "
                             f"got {num_queries}, {num_layers}, {num_levels}")
        self.hidden_dim, self.num_queries, self.num_layers = hidden_dim, num_queries, num_layers
        self.num_heads, self.num_levels = num_heads, num_levels

        self.position = PositionEmbeddingSine(hidden_dim // 2, normalize=True)
        self.level_embed = nn.Embedding(num_levels, hidden_dim)
        self.query_feat = nn.Embedding(num_queries, hidden_dim)     # content part of q_ins
        self.query_embed = nn.Embedding(num_queries, hidden_dim)    # positional part of q_ins
        self.transformer_cross_attention_layers = nn.ModuleList(
            CrossAttentionLayer(hidden_dim, num_heads) for _ in range(num_layers))
        self.transformer_self_attention_layers = nn.ModuleList(
            SelfAttentionLayer(hidden_dim, num_heads) for _ in range(num_layers))
        self.transformer_ffn_layers = nn.ModuleList(FFNLayer(hidden_dim, ffn_dim) for _ in range(num_layers))
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.instance_head = InstanceHead(hidden_dim, num_classes, mask_dim, mask_iou_head)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        """Xavier-uniform for every matrix of the attention and FFN layers (Mask2Former / DETR)."""
        for layers in (self.transformer_cross_attention_layers, self.transformer_self_attention_layers,
                       self.transformer_ffn_layers):
            for p in layers.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)

    def predict(self, queries: torch.Tensor, mask_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class and mask logits from the current queries (B, N, C) through decoder_norm and the IS head."""
        return self.instance_head(self.decoder_norm(queries), mask_features)

    def forward(self, multi_scale: list[torch.Tensor], mask_features: torch.Tensor) -> dict:
        if len(multi_scale) != self.num_levels:
            raise ValueError(f"expected {self.num_levels} pyramid levels [s32, s16, s8], got {len(multi_scale)}")
        for level, x in enumerate(multi_scale):
            if x.dim() != 4 or x.shape[1] != self.hidden_dim:
                raise ValueError(f"pyramid level {level} must be (B, {self.hidden_dim}, h, w), got {tuple(x.shape)}")
        B = mask_features.shape[0]

        # Keys/values of every level: (B, h_l*w_l, C), plus their sine positions.
        sizes = [tuple(x.shape[-2:]) for x in multi_scale]
        memories = [x.flatten(2).transpose(1, 2) + self.level_embed.weight[level]
                    for level, x in enumerate(multi_scale)]
        positions = [self.position(x).flatten(2).transpose(1, 2) for x in multi_scale]

        query_pos = self.query_embed.weight.unsqueeze(0).expand(B, -1, -1)      # (B, N, C)
        queries = self.query_feat.weight.unsqueeze(0).expand(B, -1, -1)         # (B, N, C) = q_0

        class_logits, mask_logits = self.predict(queries, mask_features)
        predictions = [(class_logits, mask_logits)]
        attn_masks = []
        for layer in range(self.num_layers):
            level = layer % self.num_levels
            blocked = attention_mask_from_logits(mask_logits, sizes[level])      # (B, N, h*w), M_{l-1}
            attn_masks.append(blocked)
            per_head = blocked.repeat_interleave(self.num_heads, dim=0)          # (B*heads, N, h*w)
            queries = self.transformer_cross_attention_layers[layer](
                queries, memories[level], per_head, positions[level], query_pos)
            queries = self.transformer_self_attention_layers[layer](queries, query_pos)
            queries = self.transformer_ffn_layers[layer](queries)
            class_logits, mask_logits = self.predict(queries, mask_features)
            predictions.append((class_logits, mask_logits))

        final_queries = self.decoder_norm(queries)
        out = {
            "queries": final_queries,
            "query_pos": query_pos,
            "pred_logits": class_logits,
            "pred_masks": mask_logits,
            "aux_outputs": [{"pred_logits": c, "pred_masks": m} for c, m in predictions[:-1]],
            "attn_masks": attn_masks,
        }
        if self.instance_head.iou_embed is not None:
            out["pred_iou_logits"] = self.instance_head.predict_iou(final_queries)     # (B, N)
        return out
