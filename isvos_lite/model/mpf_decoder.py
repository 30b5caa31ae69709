"""The VOS decoder with Multi-Path Fusion (§3.3 "Video Object Segmentation Decoder", Eq. (4), Fig. 4).

Starting from the memory readout O_0 = F_mem (stride 16), three MPF blocks climb to stride 4:

    O_i = MPF(O_{i-1}, B_i, P_i),      i = 0, 1, 2                                           Eq. (4)

    B = (res4 @ s16, res3 @ s8, res2 @ s4)            backbone features (the skips of STCN/XMem)
    P = (P_s32, P_s16, P_s8)                          pixel-decoder features of the IS branch

One block (Fig. 4): 3x3 convs align B_i and P_i to the width of O_{i-1} (B̃_i, P̃_i), then

    O_i = ResBlock( concat( up(O_{i-1}) + B̃_i ,  up(P̃_i) ) )

where ``up`` resizes bilinearly to B_i's size. O_{i-1} is one stride coarser than B_i except for the first
block (F_mem and res4 are both at s16: ``up`` is the identity there); P_i is always one stride coarser
than B_i, so up(P̃_i) is a x2 upsampling. The last layer is ReLU -> 3x3 conv -> one logit per
object at stride 4; the caller upsamples it bilinearly to the frame size.

Without multi-path fusion (Table 3, "w/o MPF") a block is the plain STCN/XMem up-block
O_i = ResBlock(up(O_{i-1}) + B̃_i), and the P convolutions do not exist.

Objects: the readout has one map per object, the skips and P are per frame. B̃_i and P̃_i are therefore
computed once per frame and broadcast over the objects (the same result as convolving a per-object copy);
everything after the first addition runs with the objects folded into the batch (as XMem's decoder,
https://github.com/hkchengrex/XMem).

Shared half of the fusion (speed): the ResBlock's input concat(a_o, p) has a per-object half a_o and
a half p = up(P̃_i) that is the same for every object. A convolution over concatenated channels is the sum of
convolutions over each part, and ReLU acts channel by channel, so

    conv1(relu(concat(a_o, p))) = conv1[:, :C](relu(a_o)) + conv1[:, C:](relu(p))
    shortcut(concat(a_o, p))    = shortcut[:, :C](a_o)    + shortcut[:, C:](p)

and the p terms are computed once per frame instead of once per object (``_fuse_shared``). With several
objects this removes a quarter to a third of the decoder's work; ``MPFBlock.share_pixel_path = False`` runs the
concatenation exactly as written above (the reference; tests prove the two equal).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
import torch.nn.functional as F

from isvos_lite.model.blocks import ResBlock, resize_to

__all__ = ["MPFBlock", "MPFDecoder"]


class MPFBlock(nn.Module):
    """One block of Eq. (4): O_i = ResBlock(concat(up(O_{i-1}) + B̃_i, up(P̃_i))) (Fig. 4).

    Args:
        in_dim: width of O_{i-1}; B_i and P_i are aligned to it.
        skip_dim: channels of the backbone feature B_i.
        pixel_dim: channels of the pixel-decoder feature P_i (C_d); ignored without multi-path fusion.
        out_dim: width of O_i.
        multi_path_fusion: False drops the P path (Table 3 baseline).
    """

    share_pixel_path = True    # compute the object-shared half of the fusion once per frame (see the module doc)

    def __init__(self, in_dim: int, skip_dim: int, pixel_dim: int, out_dim: int, multi_path_fusion: bool = True) -> None:
        super().__init__()
        self.multi_path_fusion = multi_path_fusion
        self.skip_conv = nn.Conv2d(skip_dim, in_dim, kernel_size=3, padding=1)          # B_i -> B̃_i
        if multi_path_fusion:
            self.pixel_conv = nn.Conv2d(pixel_dim, in_dim, kernel_size=3, padding=1)    # P_i -> P̃_i
            self.fuse = ResBlock(2 * in_dim, out_dim)
        else:
            self.fuse = ResBlock(in_dim, out_dim)

    def forward(self, previous: torch.Tensor, skip: torch.Tensor, pixel: torch.Tensor | None) -> torch.Tensor:
        """
        Args:
            previous: O_{i-1}, (B, O, in_dim, h', w') at this stride or one stride coarser.
            skip: B_i, (B, skip_dim, h, w), shared by the O objects.
            pixel: P_i, (B, pixel_dim, h'', w''), one stride coarser than B_i; None without MPF.

        Returns:
            O_i, (B, O, out_dim, h, w).
        """
        B, O = previous.shape[:2]
        skip_aligned = self.skip_conv(skip)                                        # (B, in_dim, h, w)
        upsampled = resize_to(previous.flatten(0, 1), skip_aligned)                # (B*O, in_dim, h, w)
        upsampled = upsampled.view(B, O, *upsampled.shape[1:])                     # (B, O, in_dim, h, w)
        fused = upsampled + skip_aligned.unsqueeze(1)                              # (B, O, in_dim, h, w)
        if self.multi_path_fusion:
            pixel_aligned = resize_to(self.pixel_conv(pixel), skip_aligned)        # (B, in_dim, h, w)
            if self.share_pixel_path and O > 1:
                return self._fuse_shared(fused, pixel_aligned)
            pixel_aligned = pixel_aligned.unsqueeze(1).expand_as(fused)            # (B, O, in_dim, h, w)
            fused = torch.cat([fused, pixel_aligned], dim=2)                       # (B, O, 2*in_dim, h, w)
        out = self.fuse(fused.flatten(0, 1))                                       # (B*O, out_dim, h, w)
        return out.view(B, O, *out.shape[1:])                                     # (B, O, out_dim, h, w)

    def _fuse_shared(self, per_object: torch.Tensor, shared: torch.Tensor) -> torch.Tensor:
        """``self.fuse(concat(per_object, shared))`` with the ``shared`` half convolved once per frame.

        per_object: (B, O, C, h, w), up(O_{i-1}) + B̃_i; shared: (B, C, h, w), up(P̃_i), the same for all O objects.
        Returns O_i, (B, O, out_dim, h, w), equal to the concatenated form (module docstring).
        """
        B, O, C = per_object.shape[:3]
        block = self.fuse                                                          # ResBlock(2C -> out_dim)
        a = per_object.flatten(0, 1)                                               # (B*O, C, h, w)

        def split_conv(conv: nn.Conv2d, x_obj: torch.Tensor, x_shared: torch.Tensor) -> torch.Tensor:
            obj = F.conv2d(x_obj, conv.weight[:, :C], conv.bias, padding=conv.padding)       # (B*O, out, h, w)
            common = F.conv2d(x_shared, conv.weight[:, C:], None, padding=conv.padding)      # (B, out, h, w)
            return (obj.view(B, O, *obj.shape[1:]) + common.unsqueeze(1)).flatten(0, 1)

        residual = split_conv(block.conv1, F.relu(a), F.relu(shared))              # conv1(relu(x))
        residual = block.conv2(F.relu(residual))                                   # (B*O, out_dim, h, w)
        if block.shortcut is not None:                                             # shortcut(x), a 3x3 conv
            identity = split_conv(block.shortcut, a, shared)
        else:                                                                      # out_dim = 2C: x itself
            identity = torch.cat([per_object, shared.unsqueeze(1).expand_as(per_object)], dim=2).flatten(0, 1)
        out = identity + residual
        return out.view(B, O, *out.shape[1:])                                     # (B, O, out_dim, h, w)


class MPFDecoder(nn.Module):
    """VOS decoder: three MPF blocks (s16 -> s8 -> s4) and a one-channel logit head (§3.3, Eq. (4), Fig. 4).

    Args:
        value_dim: C_v, the width of the readout F_mem (= O_0).
        skip_channels: channels of (res4, res3, res2), the backbone features B_0, B_1, B_2.
        pixel_dim: C_d, the channels of every pixel-decoder feature P_i.
        dims: output widths (d16, d8, d4) of the three blocks.
        multi_path_fusion: False gives the Table 3 baseline without the P path.
    """

    def __init__(self, value_dim: int, skip_channels: Sequence[int], pixel_dim: int, dims: Sequence[int],
                 multi_path_fusion: bool = True) -> None:
        super().__init__()
        skip_channels, dims = tuple(skip_channels), tuple(dims)
        if len(skip_channels) != 3:
            raise ValueError(f"skip_channels needs the channels of (res4, res3, res2), got {skip_channels}")
        if len(dims) != 3:
            raise ValueError(f"dims needs three widths (d16, d8, d4), got {dims}")
        if min((value_dim, pixel_dim, *skip_channels, *dims)) < 1:
            raise ValueError(f"all widths must be >= 1, got value_dim={value_dim}, pixel_dim={pixel_dim}, "
                             f"skip_channels={skip_channels}, dims={dims}")
        self.value_dim, self.skip_channels, self.pixel_dim, self.dims = value_dim, skip_channels, pixel_dim, dims
        self.multi_path_fusion = multi_path_fusion

        in_dims = (value_dim, dims[0], dims[1])                                    # width of O_{i-1}
        self.blocks = nn.ModuleList(
            MPFBlock(in_dims[i], skip_channels[i], pixel_dim, dims[i], multi_path_fusion) for i in range(3)
        )
        self.pred = nn.Conv2d(dims[2], 1, kernel_size=3, padding=1)               # one logit per object at s4

    def forward(self, readout: torch.Tensor, skips: Sequence[torch.Tensor],
                pixel_features: Sequence[torch.Tensor] | None = None, return_features: bool = False):
        """
        Args:
            readout: F_mem, (B, O, C_v, h16, w16).
            skips: (res4 (B, c4, h16, w16), res3 (B, c3, h8, w8), res2 (B, c2, h4, w4)), shared by all objects.
            pixel_features: [P_s32, P_s16, P_s8], each (B, C_d, h, w); required with multi-path fusion,
                ignored without it.
            return_features: also return the block outputs.

        Returns:
            logits (B, O, h4, w4) at stride 4; with ``return_features`` the pair
            (logits, [O_s16 (B, O, d16, h16, w16), O_s8 (B, O, d8, h8, w8), O_s4 (B, O, d4, h4, w4)]).
        """
        self._check_inputs(readout, skips, pixel_features)
        B, O = readout.shape[:2]
        if readout.device.type == "cpu" and not torch.is_grad_enabled():
            # channels-last (NHWC) layout at CPU inference: oneDNN's convolutions run 15-40 % faster on it at these
            # widths; every op below keeps the layout, the values are the same (not in training: see backbone.py)
            readout, skips, pixel_features = _channels_last(readout, skips, pixel_features)
        stages = []
        features = readout                                                         # O_0 = F_mem
        for i, block in enumerate(self.blocks):
            pixel = pixel_features[i] if self.multi_path_fusion else None
            features = block(features, skips[i], pixel)                            # (B, O, d_i, h_i, w_i)
            stages.append(features)
        logits = self.pred(F.relu(features.flatten(0, 1)))                         # (B*O, 1, h4, w4)
        logits = logits.view(B, O, *logits.shape[-2:])                             # (B, O, h4, w4)
        return (logits, stages) if return_features else logits

    def _check_inputs(self, readout, skips, pixel_features) -> None:
        if readout.dim() != 5 or readout.shape[2] != self.value_dim:
            raise ValueError(f"readout must have shape (B, O, C_v={self.value_dim}, h, w), got {tuple(readout.shape)}")
        B = readout.shape[0]
        if len(skips) != 3:
            raise ValueError(f"skips must be the three backbone features (res4, res3, res2), got {len(skips)} tensors")
        for name, skip, channels in zip(("res4", "res3", "res2"), skips, self.skip_channels):
            if skip.dim() != 4 or skip.shape[0] != B or skip.shape[1] != channels:
                raise ValueError(f"skip {name} must have shape (B={B}, {channels}, h, w), got {tuple(skip.shape)}")
        if readout.shape[-2:] != skips[0].shape[-2:]:
            raise ValueError(f"readout {tuple(readout.shape)} and res4 {tuple(skips[0].shape)} must have the same "
                             f"spatial size (both stride 16)")
        if not self.multi_path_fusion:
            return
        if pixel_features is None:
            raise ValueError("this MPFDecoder uses multi-path fusion: pass pixel_features [P_s32, P_s16, P_s8] "
                             "from the pixel decoder (or build it with multi_path_fusion=False)")
        if len(pixel_features) != 3:
            raise ValueError(f"pixel_features must be [P_s32, P_s16, P_s8], got {len(pixel_features)} tensors")
        for name, pixel in zip(("P_s32", "P_s16", "P_s8"), pixel_features):
            if pixel.dim() != 4 or pixel.shape[0] != B or pixel.shape[1] != self.pixel_dim:
                raise ValueError(f"pixel feature {name} must have shape (B={B}, {self.pixel_dim}, h, w), "
                                 f"got {tuple(pixel.shape)}")


def _channels_last(readout, skips, pixel_features):
    """The decoder's inputs in channels-last layout (same shapes and values, NHWC strides)."""
    def nhwc(x):
        return x.contiguous(memory_format=torch.channels_last)

    B, O = readout.shape[:2]
    readout = nhwc(readout.flatten(0, 1)).view(B, O, *readout.shape[2:])
    skips = tuple(nhwc(s) for s in skips)
    if pixel_features is not None:
        pixel_features = [nhwc(p) for p in pixel_features]
    return readout, skips, pixel_features
