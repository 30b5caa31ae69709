"""Sinusoidal 2-d position embedding (DETR / Mask2Former), §3.1: "For each resolution, we add both a
sinusoidal positional embedding and a learnable scale-level embedding".

For a map of size H x W, pixel (i, j) gets y = (i + 1) / H · scale and x = (j + 1) / W · scale
(normalised, so every level spans [0, 2π] whatever its size). Each coordinate t is encoded with
``num_pos_feats`` channels: sin(t / T^(2k/F)) and cos(t / T^(2k/F)) interleaved, k = 0..F/2-1.
The output concatenates the y-encoding then the x-encoding: 2·num_pos_feats channels.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["PositionEmbeddingSine"]


class PositionEmbeddingSine(nn.Module):
    """Fixed (no parameters) sine/cosine position embedding of a feature map, as in Mask2Former.

    Args:
        num_pos_feats: channels per axis (use C/2 for a C-channel map); must be even.
        temperature: the wavelength base T.
        normalize: divide the cumulative coordinate by the map size (then multiply by ``scale``).
        scale: the range of a normalised coordinate, 2π by default.

    ``forward(x (B, C, H, W), mask=None)`` returns (B, 2·num_pos_feats, H, W), (y, x) concatenated.
    An optional ``mask`` (B, H, W), True = padding, excludes padded pixels from the coordinates.
    """

    def __init__(self, num_pos_feats: int = 64, temperature: float = 10000.0, normalize: bool = True,
                 scale: float | None = None) -> None:
        super().__init__()
        if num_pos_feats < 2 or num_pos_feats % 2:
            raise ValueError(f"num_pos_feats must be an even number >= 2, got {num_pos_feats}")
        if scale is not None and not normalize:
            raise ValueError("scale is only used with normalize=True")
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale
        # Without a mask the embedding depends only on the map's size: kept for the last few sizes, since a video
        # asks for the same ones every frame. Inference tensors are kept apart from normal ones.
        self._cache: dict[tuple, torch.Tensor] = {}

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"PositionEmbeddingSine expects a (B, C, H, W) map, got {tuple(x.shape)}")
        if mask is not None:
            return self._embed(x, mask)
        key = (tuple(x.shape), x.dtype, x.device, torch.is_inference_mode_enabled())
        if key not in self._cache:
            if len(self._cache) >= 8:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = self._embed(x, None)
        return self._cache[key]

    def _embed(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        B, _, H, W = x.shape
        if mask is None:
            mask = torch.zeros(B, H, W, dtype=torch.bool, device=x.device)
        not_mask = ~mask
        y_embed = not_mask.cumsum(1, dtype=torch.float32)          # (B, H, W): 1..H down each column
        x_embed = not_mask.cumsum(2, dtype=torch.float32)          # (B, H, W): 1..W along each row
        if self.normalize:
            eps = 1e-6
            y_embed = y_embed / (y_embed[:, -1:, :] + eps) * self.scale
            x_embed = x_embed / (x_embed[:, :, -1:] + eps) * self.scale

        k = torch.arange(self.num_pos_feats, dtype=torch.float32, device=x.device)
        wavelengths = self.temperature ** (2 * (k // 2) / self.num_pos_feats)   # (F,) pairs share a wavelength
        pos_x = x_embed[..., None] / wavelengths                    # (B, H, W, F)
        pos_y = y_embed[..., None] / wavelengths
        pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4).flatten(3)
        pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4).flatten(3)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2).to(x.dtype)   # (B, 2F, H, W)

    def extra_repr(self) -> str:
        return (f"num_pos_feats={self.num_pos_feats}, temperature={self.temperature}, "
                f"normalize={self.normalize}, scale={self.scale:.4f}")
