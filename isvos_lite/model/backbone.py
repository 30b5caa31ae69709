"""The shared ResNet backbone (§3, Fig. 3): one network feeds both the IS and the VOS branch.

ISVOS extracts res2..res5 once per frame: res4 (F_res4, stride 16) is the input of the Enhanced Key
Encoder and the value encoder (§3.2); res2/res3/res4 are the skip features B_i of the VOS decoder
(§3.3, Eq. (4)); res3/res4/res5 feed the pixel decoder of the IS branch (§3.1).

The module tree uses **torchvision's names exactly** (``conv1``, ``bn1``, ``layer1.0.downsample.0`` ...),
so ``torchvision.models.resnet50().state_dict()`` (minus ``fc.*``) loads with ``load_state_dict`` as it is.
Bottleneck blocks put the stride in the 3x3 conv (torchvision "v1.5", detectron2 ``STRIDE_IN_1X1 False``).

Two normalisations:

* ``"frozen_bn"`` — :class:`FrozenBatchNorm2d`, a fixed per-channel affine map. Used with pretrained
  weights: statistics and affine stay frozen, as in Mask2Former and STCN/XMem
  (https://github.com/facebookresearch/Mask2Former, https://github.com/hkchengrex/STCN).
* ``"bn"`` — ordinary ``nn.BatchNorm2d`` for training from scratch (the teaching presets). The last
  norm of every residual block starts at gamma = 0 so each block starts as the identity.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FrozenBatchNorm2d", "BasicBlock", "Bottleneck", "ResNet"]


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm with fixed statistics and affine parameters: y = (x - mean) / sqrt(var + eps) * w + b.

    Everything is a buffer (nothing trains). Loading a state dict that holds ``num_batches_tracked``
    (any torchvision checkpoint) silently drops that key, as torchvision's own FrozenBatchNorm2d does.
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, C, H, W); fold the four vectors into one scale and one shift per channel.
        scale = self.weight * (self.running_var + self.eps).rsqrt()      # (C,)
        shift = self.bias - self.running_mean * scale                     # (C,)
        return x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


def _make_norm(kind: str, channels: int) -> nn.Module:
    if kind == "frozen_bn":
        return FrozenBatchNorm2d(channels)
    if kind == "bn":
        return nn.BatchNorm2d(channels)
    raise ValueError(f"norm must be 'frozen_bn' or 'bn', got {kind!r}")


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual (ResNet-18/34). ``downsample`` = 1x1 conv + norm when the shape changes."""

    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int, norm: str) -> None:
        super().__init__()
        out_ch = planes * self.expansion
        self.conv1 = _conv3x3(in_ch, planes, stride)
        self.bn1 = _make_norm(norm, planes)
        self.conv2 = _conv3x3(planes, out_ch)
        self.bn2 = _make_norm(norm, out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(_conv1x1(in_ch, out_ch, stride), _make_norm(norm, out_ch))

    @property
    def last_norm(self) -> nn.Module:
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (carries the stride) -> 1x1 expand x4, with a residual (ResNet-50)."""

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int, norm: str) -> None:
        super().__init__()
        out_ch = planes * self.expansion
        self.conv1 = _conv1x1(in_ch, planes)
        self.bn1 = _make_norm(norm, planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = _make_norm(norm, planes)
        self.conv3 = _conv1x1(planes, out_ch)
        self.bn3 = _make_norm(norm, out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(_conv1x1(in_ch, out_ch, stride), _make_norm(norm, out_ch))

    @property
    def last_norm(self) -> nn.Module:
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


# depth -> (block type, number of blocks per stage), as in torchvision / He et al. 2016.
_LAYOUTS: dict[int, tuple[type[nn.Module], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
}


class ResNet(nn.Module):
    """ResNet-18/34/50 without the classifier, returning the stage outputs res2..res5 (§3, Fig. 3).

    Args:
        depth: 18, 34 (BasicBlock) or 50 (Bottleneck).
        width: channels of the stem (torchvision: 64). Stage widths are width * (1, 2, 4, 8),
            times 4 for Bottleneck outputs.
        in_channels: 3 for RGB; the value encoder uses 5 (RGB, object mask, other objects, as STCN/XMem).
        norm: ``"frozen_bn"`` or ``"bn"`` (see the module docstring).
        num_stages: how many of layer1..layer4 to build; 3 stops at res4 (stride 16).

    ``forward(x)`` with x (B, in_channels, H, W) returns ``{"res2": s4, "res3": s8, "res4": s16, "res5": s32}``
    (only the stages built). Any H, W works; odd sizes round up at every stride-2 step.
    """

    def __init__(self, depth: int = 50, width: int = 64, in_channels: int = 3, norm: str = "frozen_bn",
                 num_stages: int = 4) -> None:
        super().__init__()
        if depth not in _LAYOUTS:
            raise ValueError(f"ResNet depth must be one of {sorted(_LAYOUTS)}, got {depth}")
        if not 1 <= num_stages <= 4:
            raise ValueError(f"num_stages must be between 1 and 4, got {num_stages}")
        if width < 1 or in_channels < 1:
            raise ValueError(f"width and in_channels must be >= 1, got width={width}, in_channels={in_channels}")
        _make_norm(norm, 1)  # validates the name with a clear message
        block, blocks_per_stage = _LAYOUTS[depth]
        self.depth, self.width, self.in_channels, self.norm, self.num_stages = depth, width, in_channels, norm, num_stages

        # Stem: 7x7 stride-2 conv + norm + ReLU + 3x3 stride-2 max-pool -> stride 4.
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = _make_norm(norm, width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        self.channels: dict[str, int] = {}
        in_ch = width
        for stage in range(num_stages):
            planes = width * 2 ** stage
            stride = 1 if stage == 0 else 2
            blocks = [block(in_ch, planes, stride, norm)]
            in_ch = planes * block.expansion
            blocks += [block(in_ch, planes, 1, norm) for _ in range(blocks_per_stage[stage] - 1)]
            self.add_module(f"layer{stage + 1}", nn.Sequential(*blocks))
            self.channels[f"res{stage + 2}"] = in_ch

        self._init_weights()

    def _init_weights(self) -> None:
        """torchvision's initialisation: He-normal convs; with trainable BN, zero gamma in each block's last norm."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.norm == "bn":
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(m.last_norm.weight)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"ResNet expects input of shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        # NHWC inside at CPU inference: oneDNN's convolutions and max-pooling are faster on it. Not when
        # training: a channels-last backward of this network crashed torch 2.13 on a CPU (bus error)
        channels_last = x.device.type == "cpu" and not torch.is_grad_enabled()
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))   # (B, width, H/4, W/4)
        features: dict[str, torch.Tensor] = {}
        for stage in range(self.num_stages):
            x = getattr(self, f"layer{stage + 1}")(x)          # res2: s4, res3: s8, res4: s16, res5: s32
            features[f"res{stage + 2}"] = x
        if channels_last:   # the usual layout outside, same values
            features = {name: f.contiguous() for name, f in features.items()}
        return features
