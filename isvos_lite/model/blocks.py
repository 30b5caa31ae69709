"""Small convolutional building blocks shared by the VOS branch (§3.2 value encoder, §3.3 VOS decoder).

* :class:`ResBlock` — the pre-activation residual block of STCN/XMem (https://github.com/hkchengrex/STCN):
  ReLU -> 3x3 conv -> ReLU -> 3x3 conv, plus the input (or a 3x3 conv of it when the width changes). No normalisation
  layers: the fusion blocks and the decoder of memory-based VOS models use none.
* :class:`ChannelGate`, :class:`SpatialGate`, :class:`CBAM` — the Convolutional Block Attention Module
  (Woo et al., ECCV 2018), which the paper puts after the value encoder's first ResBlock ("two ResBlocks
  and a CBAM block", §3.2 "Memory Update"; as STCN/XMem).
* :func:`resize_to` — bilinear resizing to a given feature map's size (the "up(·)" of Eq. (4)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ResBlock", "ChannelGate", "SpatialGate", "CBAM", "resize_to"]


class ResBlock(nn.Module):
    """Pre-activation residual block: out = conv2(relu(conv1(relu(x)))) + shortcut(x).

    ``shortcut`` is the identity when ``in_dim == out_dim`` and a 3x3 conv otherwise (STCN/XMem).

    Args:
        in_dim: input channels.
        out_dim: output channels.
    """

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        if in_dim < 1 or out_dim < 1:
            raise ValueError(f"ResBlock needs in_dim, out_dim >= 1, got in_dim={in_dim}, out_dim={out_dim}")
        self.in_dim, self.out_dim = in_dim, out_dim
        self.conv1 = nn.Conv2d(in_dim, out_dim, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(out_dim, out_dim, kernel_size=3, padding=1)
        self.shortcut = None if in_dim == out_dim else nn.Conv2d(in_dim, out_dim, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, in_dim, H, W)
        residual = self.conv1(F.relu(x))                     # (B, out_dim, H, W)
        residual = self.conv2(F.relu(residual))              # (B, out_dim, H, W)
        identity = x if self.shortcut is None else self.shortcut(x)
        return identity + residual                           # (B, out_dim, H, W)


class ChannelGate(nn.Module):
    """CBAM channel attention: x * sigmoid(MLP(avgpool(x)) + MLP(maxpool(x))), one weight per channel.

    The MLP is shared by both pooled vectors: C -> C/reduction -> C with a ReLU in between
    (at least one hidden unit, so small teaching widths still work).
    """

    def __init__(self, dim: int, reduction: int = 16) -> None:
        super().__init__()
        if dim < 1 or reduction < 1:
            raise ValueError(f"ChannelGate needs dim, reduction >= 1, got dim={dim}, reduction={reduction}")
        hidden = max(1, dim // reduction)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, C, H, W)
        avg = self.mlp(x.mean(dim=(2, 3)))                   # (B, C)
        mx = self.mlp(x.amax(dim=(2, 3)))                    # (B, C)
        gate = torch.sigmoid(avg + mx)                       # (B, C)
        return x * gate[:, :, None, None]                    # (B, C, H, W)


class SpatialGate(nn.Module):
    """CBAM spatial attention: x * sigmoid(conv7x7([max_c(x), mean_c(x)])), one weight per pixel."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"SpatialGate kernel_size must be a positive odd number, got {kernel_size}")
        self.conv = nn.Conv2d(2, 1, kernel_size=kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, C, H, W)
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)  # (B, 2, H, W)
        gate = torch.sigmoid(self.conv(pooled))              # (B, 1, H, W)
        return x * gate                                      # (B, C, H, W)


class CBAM(nn.Module):
    """Convolutional Block Attention Module: a channel gate, then a spatial gate (Woo et al., ECCV 2018; STCN/XMem).

    Returns the gated features; the value encoder uses it residually, ``x + CBAM(x)``.
    """

    def __init__(self, dim: int, reduction: int = 16) -> None:
        super().__init__()
        self.channel_gate = ChannelGate(dim, reduction)
        self.spatial_gate = SpatialGate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, C, H, W) -> (B, C, H, W)
        return self.spatial_gate(self.channel_gate(x))


def resize_to(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Bilinearly resize ``x`` (B, C, h, w) to the spatial size of ``reference`` (..., H, W).

    A no-op when the sizes already match. ``align_corners=False``, as everywhere in the package.
    """
    size = tuple(reference.shape[-2:])
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
