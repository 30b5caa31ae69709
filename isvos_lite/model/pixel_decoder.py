"""Pixel decoder of the IS branch (§3.1, Fig. 3): multi-scale deformable-attention encoder + one FPN step.

It turns the backbone stages into
  * the feature pyramid P = [P_s32, P_s16, P_s8] (C_d channels each) read by the transformer decoder and,
    upsampled, by the VOS decoder's Multi-Path Fusion (§3.3, Eq. (4));
  * the per-pixel embeddings F_pixel (C_eps channels, stride 4) that the mask head dots with queries.

Steps (Mask2Former's ``MSDeformAttnPixelDecoder``, https://github.com/facebookresearch/Mask2Former):
  1. res5, res4, res3 -> 1x1 conv + GroupNorm to conv_dim;
  2. flatten and concatenate the 3 levels; add sine position + a learned level embedding;
  3. ``num_layers`` post-norm encoder layers: deformable self-attention (every pixel is a query whose
     reference point is its own centre, sampling all 3 levels, Eq. (2)) -> add & LayerNorm -> FFN -> add & LN;
  4. split back into 3 maps: P_s32, P_s16, P_s8;
  5. FPN step: 1x1 lateral conv (GN) on res2 + bilinear upsampling of P_s8 -> 3x3 conv (GN, ReLU);
  6. F_pixel = 1x1 conv of that stride-4 map to mask_dim.
Runs in fp32 even under autocast, as Mask2Former does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from isvos_lite.model.deform_attn import MSDeformAttn
from isvos_lite.model.position_encoding import PositionEmbeddingSine

__all__ = ["group_norm", "DeformableEncoderLayer", "MSDeformAttnPixelDecoder", "pixel_centre_reference_points"]

# Backbone stages read by the deformable encoder, from low to high resolution.
ENCODER_LEVELS = ("res5", "res4", "res3")


def group_norm(channels: int, max_groups: int = 32) -> nn.GroupNorm:
    """GroupNorm with 32 groups, or the largest group count below 32 that divides ``channels``."""
    groups = max(g for g in range(1, max_groups + 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


def pixel_centre_reference_points(spatial_shapes: list[tuple[int, int]], device=None) -> torch.Tensor:
    """Normalised (x, y) centres of every pixel of every level, concatenated: (Σ H_l·W_l, 2)."""
    points = []
    for h, w in spatial_shapes:
        ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                                torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
        points.append(torch.stack([(xs + 0.5) / w, (ys + 0.5) / h], dim=-1).reshape(-1, 2))
    return torch.cat(points, dim=0)


class DeformableEncoderLayer(nn.Module):
    """Deformable self-attention -> add & LayerNorm -> FFN (ReLU) -> add & LayerNorm (post-norm, no dropout)."""

    def __init__(self, d_model: int, ffn_dim: int, n_levels: int, n_heads: int, n_points: int) -> None:
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, src: torch.Tensor, pos: torch.Tensor, reference_points: torch.Tensor,
                spatial_shapes: torch.Tensor, level_start_index: torch.Tensor) -> torch.Tensor:
        # src, pos: (B, S, C); reference_points: (B, S, L, 2)
        attended = self.self_attn(src + pos, reference_points, src, spatial_shapes, level_start_index)
        src = self.norm1(src + attended)
        return self.norm2(src + self.linear2(F.relu(self.linear1(src))))


class MSDeformAttnPixelDecoder(nn.Module):
    """The pixel decoder (§3.1). See the module docstring for the steps.

    Args:
        in_channels: backbone channels per stage, keys res2..res5 (``ResNet.channels``).
        conv_dim: C_d, the width of P_s32/P_s16/P_s8.
        mask_dim: C_eps, the width of F_pixel.
        num_layers: deformable encoder layers (paper: 6).
        num_heads, num_points: deformable attention heads and points per head and level.
        ffn_dim: hidden width of the encoder FFN (paper: 1024).

    ``forward(features)`` -> ``(mask_features (B, mask_dim, H/4, W/4), [P_s32, P_s16, P_s8])``.
    """

    def __init__(self, in_channels: dict[str, int], conv_dim: int, mask_dim: int, num_layers: int,
                 num_heads: int, num_points: int, ffn_dim: int) -> None:
        super().__init__()
        missing = [k for k in ("res2", *ENCODER_LEVELS) if k not in in_channels]
        if missing:
            raise ValueError(f"in_channels needs res2..res5, missing {missing}; got {sorted(in_channels)}")
        if conv_dim % 2 or conv_dim % num_heads:
            raise ValueError(f"conv_dim ({conv_dim}) must be even and divisible by num_heads ({num_heads})")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.conv_dim, self.mask_dim = conv_dim, mask_dim
        n_levels = len(ENCODER_LEVELS)

        # 1. Input projections, index 0 = res5 (s32), 1 = res4 (s16), 2 = res3 (s8).
        self.input_proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(in_channels[name], conv_dim, kernel_size=1), group_norm(conv_dim))
            for name in ENCODER_LEVELS)
        # 2. Position: fixed sine per level + learned embedding of the level.
        self.position = PositionEmbeddingSine(conv_dim // 2, normalize=True)
        self.level_embed = nn.Parameter(torch.empty(n_levels, conv_dim))
        # 3. Deformable encoder.
        self.encoder_layers = nn.ModuleList(
            DeformableEncoderLayer(conv_dim, ffn_dim, n_levels, num_heads, num_points) for _ in range(num_layers))
        # 5. FPN step to stride 4 (no conv bias: GroupNorm follows).
        self.lateral_conv = nn.Sequential(nn.Conv2d(in_channels["res2"], conv_dim, kernel_size=1, bias=False),
                                          group_norm(conv_dim))
        self.output_conv = nn.Sequential(nn.Conv2d(conv_dim, conv_dim, kernel_size=3, padding=1, bias=False),
                                         group_norm(conv_dim), nn.ReLU(inplace=True))
        # 6. Per-pixel embeddings.
        self.mask_features = nn.Conv2d(conv_dim, mask_dim, kernel_size=1)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        """Mask2Former's initialisation: xavier for matrices, Deformable-DETR's for the attention,
        normal level embedding, c2-xavier (kaiming-uniform a=1) for the FPN convs."""
        for layer in self.encoder_layers:
            for p in layer.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)
            layer.self_attn._reset_parameters()
        nn.init.normal_(self.level_embed)
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.zeros_(proj[0].bias)
        for conv in (self.lateral_conv[0], self.output_conv[0], self.mask_features):
            nn.init.kaiming_uniform_(conv.weight, a=1)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)

    def forward(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        missing = [k for k in ("res2", *ENCODER_LEVELS) if k not in features]
        if missing:
            raise ValueError(f"pixel decoder needs backbone features res2..res5, missing {missing}")
        device_type = features["res2"].device.type
        with torch.autocast(device_type=device_type, enabled=False):
            return self._forward_fp32({k: v.float() for k, v in features.items()})

    def _forward_fp32(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        # 1-2. Project, add position and level embeddings, flatten.
        sources, positions, shapes = [], [], []
        for level, name in enumerate(ENCODER_LEVELS):
            x = self.input_proj[level](features[name])                       # (B, C, h_l, w_l)
            B, C, h, w = x.shape
            shapes.append((h, w))
            pos = self.position(x) + self.level_embed[level].view(1, C, 1, 1)
            sources.append(x.flatten(2).transpose(1, 2))                     # (B, h_l*w_l, C)
            positions.append(pos.flatten(2).transpose(1, 2))
        src = torch.cat(sources, dim=1)                                      # (B, S, C)
        pos = torch.cat(positions, dim=1)
        spatial_shapes = torch.tensor(shapes, dtype=torch.long, device=src.device)          # (3, 2)
        sizes = [h * w for h, w in shapes]
        level_start_index = torch.tensor([0, sizes[0], sizes[0] + sizes[1]], device=src.device)
        # Every pixel queries from its own centre; the same normalised point on each level.
        reference_points = pixel_centre_reference_points(shapes, device=src.device)       # (S, 2)
        reference_points = reference_points[None, :, None, :].expand(B, -1, len(shapes), -1)  # (B, S, 3, 2)

        # 3. Deformable encoder.
        for layer in self.encoder_layers:
            src = layer(src, pos, reference_points, spatial_shapes, level_start_index)

        # 4. Back to maps: [P_s32, P_s16, P_s8], each (B, C, h_l, w_l).
        multi_scale = [part.transpose(1, 2).reshape(B, C, h, w)
                       for part, (h, w) in zip(src.split(sizes, dim=1), shapes)]

        # 5. FPN step: res2 lateral + upsampled P_s8 -> stride-4 map.
        lateral = self.lateral_conv(features["res2"])                        # (B, C, H/4, W/4)
        fused = lateral + F.interpolate(multi_scale[-1], size=lateral.shape[-2:], mode="bilinear",
                                        align_corners=False)
        fused = self.output_conv(fused)
        # 6. F_pixel.
        return self.mask_features(fused), multi_scale                        # (B, mask_dim, H/4, W/4)
