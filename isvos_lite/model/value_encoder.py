"""The value encoder (§3.2 "Memory Update"): the memory value V_cur of a frame, one per object.

"We first input the predicted mask to a lightweight backbone (ResNet18), the last layer feature of which is
concatenated with F_res4 to obtain Ṽ_cur [...] Next, we further input Ṽ_cur to two ResBlocks and a CBAM
block to get the memory value V_cur."  Following STCN/XMem
(https://github.com/hkchengrex/STCN, https://github.com/hkchengrex/XMem):

* input per object: 5 channels = [normalised RGB image, the object's mask, the sum of the OTHER objects'
  masks]; the masks are the *soft* predicted probabilities (or the given first-frame masks);
* a ResNet-18 truncated after layer3 (stride 16) with ``conv1`` taking 5 channels;
* fusion: concat(F_res4, R18 feature) -> ResBlock -> x + CBAM(x) -> ResBlock -> C_v channels.

Objects are folded into the batch, so every object costs one ResNet-18 pass; F_res4 is shared.
"""

from __future__ import annotations

import torch
from torch import nn

from isvos_lite.model.backbone import ResNet
from isvos_lite.model.blocks import CBAM, ResBlock

__all__ = ["ValueEncoder"]


class ValueEncoder(nn.Module):
    """Memory value from (image, soft masks, F_res4) (§3.2 "Memory Update"; STCN/XMem's value encoder).

    Args:
        value_dim: C_v, channels of the memory value.
        res4_channels: channels of the shared backbone's F_res4.
        depth, width, norm: the lightweight ResNet (paper: ResNet-18, width 64).
    """

    def __init__(self, value_dim: int, res4_channels: int, depth: int = 18, width: int = 64, norm: str = "bn") -> None:
        super().__init__()
        if value_dim < 1 or res4_channels < 1:
            raise ValueError(f"value_dim and res4_channels must be >= 1, got {value_dim}, {res4_channels}")
        self.value_dim, self.res4_channels = value_dim, res4_channels
        self.mask_backbone = ResNet(depth, width, in_channels=5, norm=norm, num_stages=3)   # -> res4 at s16
        mask_channels = self.mask_backbone.channels["res4"]
        self.fuse_in = ResBlock(res4_channels + mask_channels, value_dim)   # Ṽ_cur -> C_v
        self.attention = CBAM(value_dim)                                    # used residually: x + CBAM(x)
        self.fuse_out = ResBlock(value_dim, value_dim)

    @staticmethod
    def object_inputs(image: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """The 5-channel input of every object: [image, own mask, sum of the other objects' masks].

        image (B, 3, H, W), masks (B, O, H, W) -> (B, O, 5, H, W).
        """
        B, O, H, W = masks.shape
        others = masks.sum(dim=1, keepdim=True) - masks                     # (B, O, H, W)
        image = image.unsqueeze(1).expand(B, O, 3, H, W)                     # (B, O, 3, H, W)
        return torch.cat([image, masks.unsqueeze(2), others.unsqueeze(2)], dim=2)  # (B, O, 5, H, W)

    def forward(self, image: torch.Tensor, masks: torch.Tensor, res4: torch.Tensor) -> torch.Tensor:
        """
        Args:
            image: (B, 3, H, W), already ImageNet-normalised.
            masks: (B, O, H, W) soft object probabilities in [0, 1] (O >= 1).
            res4: (B, C4, h, w) F_res4 of the same frame (h, w = H/16, W/16 rounded up).

        Returns:
            V_cur, (B, O, C_v, h, w).
        """
        self._check_inputs(image, masks, res4)
        B, O = masks.shape[:2]
        inputs = self.object_inputs(image, masks.to(image.dtype)).flatten(0, 1)   # (B*O, 5, H, W)
        mask_features = self.mask_backbone(inputs)["res4"]                         # (B*O, c, h, w)
        if mask_features.shape[-2:] != res4.shape[-2:]:
            raise ValueError(f"res4 has spatial size {tuple(res4.shape[-2:])} but the value backbone gives "
                             f"{tuple(mask_features.shape[-2:])} for a {tuple(image.shape[-2:])} image; pass the res4 "
                             f"of this very frame")
        shared = res4.unsqueeze(1).expand(B, O, *res4.shape[1:]).flatten(0, 1)     # (B*O, C4, h, w)
        x = self.fuse_in(torch.cat([shared, mask_features], dim=1))               # (B*O, C_v, h, w)
        x = x + self.attention(x)                                                  # (B*O, C_v, h, w)
        x = self.fuse_out(x)                                                       # (B*O, C_v, h, w)
        return x.view(B, O, *x.shape[1:])                                          # (B, O, C_v, h, w)

    def _check_inputs(self, image, masks, res4) -> None:
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"image must have shape (B, 3, H, W), got {tuple(image.shape)}")
        if masks.dim() != 4 or masks.shape[0] != image.shape[0] or masks.shape[-2:] != image.shape[-2:]:
            raise ValueError(f"masks must have shape (B, O, H, W) = ({image.shape[0]}, O, {image.shape[2]}, "
                             f"{image.shape[3]}) matching the image, got {tuple(masks.shape)}")
        if masks.shape[1] < 1:
            raise ValueError("masks has no objects (O = 0); the value encoder needs at least one object")
        if res4.dim() != 4 or res4.shape[0] != image.shape[0] or res4.shape[1] != self.res4_channels:
            raise ValueError(f"res4 must have shape (B={image.shape[0]}, {self.res4_channels}, h, w), "
                             f"got {tuple(res4.shape)}")
