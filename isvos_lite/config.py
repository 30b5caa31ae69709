"""Model configuration: one plain dataclass, with named presets.

Every size of the network lives here, so a preset name fully describes an architecture.
The names follow the paper (§3): ``hidden_dim`` is C_d (query / pixel-decoder width),
``num_queries`` is N, ``key_dim`` is C_k, ``value_dim`` is C_v.

Presets
-------
``paper``  the paper's sizes (§3, §4.1): ResNet-50, C_d = 256, N = 100, 6 pixel-decoder layers,
           9 transformer-decoder layers, C_k = 64, C_v = 512, ResNet-18 value encoder (~100 M parameters).
``lite``   the same architecture, narrower and shallower: trains on a 2-core CPU in minutes and
           ships as a checkpoint of a few MB (``checkpoints/``).
``tiny``   the smallest sizes that still exercise every code path; used by the tests.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, asdict

__all__ = ["ModelConfig", "PRESETS", "get_preset", "config_from_dict"]


@dataclass
class ModelConfig:
    name: str = "paper"

    # --- shared backbone (§3, "F_res4 from ResNet") --------------------------------------
    backbone_depth: int = 50          # 18 | 34 | 50 (torchvision layouts)
    backbone_width: int = 64          # channels of the stem; torchvision uses 64
    backbone_norm: str = "frozen_bn"  # "frozen_bn" (pretrained weights) | "bn" (training from scratch)

    # --- instance segmentation branch (§3.1, Mask2Former) --------------------------------
    hidden_dim: int = 256             # C_d: pixel-decoder and query width
    mask_dim: int = 256               # C_eps: per-pixel embedding width (F_pixel)
    num_queries: int = 100            # N object queries
    num_classes: int = 80             # K instance categories (+1 "no object" inside the head)
    num_heads: int = 8
    pixel_decoder_layers: int = 6     # deformable-attention encoder layers
    pixel_decoder_ffn_dim: int = 1024
    decoder_layers: int = 9           # masked-attention decoder layers (cycle s32 -> s16 -> s8)
    decoder_ffn_dim: int = 2048
    deform_points: int = 4            # sampling points per head and level

    # --- video object segmentation branch (§3.2, §3.3) -----------------------------------
    key_dim: int = 64                 # C_k
    value_dim: int = 512              # C_v
    eke_ffn_dim: int = 1024           # FFN after the Enhanced Key Encoder's deformable attention
    value_backbone_depth: int = 18    # the "lightweight backbone" of the value encoder
    value_backbone_width: int = 64
    decoder_dims: tuple[int, int, int] = (512, 256, 256)   # MPF output widths at s16, s8, s4 (XMem: 512, 256, 256)

    # how the EKE injects the instance maps (§3.2; see isvos_lite/model/key_encoder.py):
    # "cosine" = bounded tau * cos(Q_g, q_vos) (ours, keeps the maps out of saturation) | "literal" = the text
    # | "identity" = cosine maps, order-invariant map-weighted query content concatenated (ours, an experiment)
    qe_injection: str = "cosine"
    qe_tau_max: float = 4.0           # bound of the cosine injection's logits
    qe_tau_init: float | None = None  # its starting temperature (None: tau_max / 2); a scalar moves ~lr per step
    qe_balance: bool = False          # rescale the injected channels to Q_g's spatial deviation (an experiment)
    # a mask-IoU head on the IS branch's final queries (not in the paper; SAM's / Mask Scoring R-CNN's idea): it
    # predicts each query mask's IoU with the instance it covers, to rank instance masks (isvos-lite instance-ap)
    mask_iou_head: bool = False

    # --- ablation switches (Table 3) -----------------------------------------------------
    query_enhancement: bool = True    # False: the query key is a projection of Q_g alone
    multi_path_fusion: bool = True    # False: the decoder fuses backbone skips only

    def __post_init__(self) -> None:
        self.decoder_dims = tuple(self.decoder_dims)
        if self.backbone_depth not in (18, 34, 50):
            raise ValueError(f"backbone_depth must be 18, 34 or 50, got {self.backbone_depth}")
        if self.value_backbone_depth not in (18, 34, 50):
            raise ValueError(f"value_backbone_depth must be 18, 34 or 50, got {self.value_backbone_depth}")
        if self.backbone_norm not in ("frozen_bn", "bn"):
            raise ValueError(f"backbone_norm must be 'frozen_bn' or 'bn', got {self.backbone_norm!r}")
        if self.qe_injection not in ("cosine", "literal", "identity"):
            raise ValueError(f"qe_injection must be 'cosine', 'literal' or 'identity', got {self.qe_injection!r}")
        if self.qe_tau_max <= 0:
            raise ValueError(f"qe_tau_max must be > 0, got {self.qe_tau_max}")
        if self.qe_tau_init is not None and not 0 < self.qe_tau_init < self.qe_tau_max:
            raise ValueError(f"qe_tau_init must lie strictly between 0 and qe_tau_max ({self.qe_tau_max}), "
                             f"got {self.qe_tau_init}")
        if self.hidden_dim % self.num_heads:
            raise ValueError(f"hidden_dim ({self.hidden_dim}) must be divisible by num_heads ({self.num_heads})")
        if len(self.decoder_dims) != 3:
            raise ValueError(f"decoder_dims needs three widths (s16, s8, s4), got {self.decoder_dims}")
        for name in ("num_queries", "num_classes", "decoder_layers", "pixel_decoder_layers", "key_dim", "value_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["decoder_dims"] = list(self.decoder_dims)
        return d

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, ModelConfig] = {
    "paper": ModelConfig(name="paper"),
    "lite": ModelConfig(
        name="lite",
        backbone_depth=18, backbone_width=16, backbone_norm="bn",
        hidden_dim=64, mask_dim=64, num_queries=16, num_classes=4, num_heads=4,
        pixel_decoder_layers=2, pixel_decoder_ffn_dim=128,
        decoder_layers=3, decoder_ffn_dim=128, deform_points=4,
        key_dim=32, value_dim=64, eke_ffn_dim=128,
        value_backbone_depth=18, value_backbone_width=16,
        decoder_dims=(64, 32, 32),
    ),
    "tiny": ModelConfig(
        name="tiny",
        backbone_depth=18, backbone_width=8, backbone_norm="bn",
        hidden_dim=32, mask_dim=32, num_queries=8, num_classes=4, num_heads=2,
        pixel_decoder_layers=1, pixel_decoder_ffn_dim=64,
        decoder_layers=3, decoder_ffn_dim=64, deform_points=2,
        key_dim=16, value_dim=32, eke_ffn_dim=64,
        value_backbone_depth=18, value_backbone_width=8,
        decoder_dims=(32, 16, 16),
    ),
}


def get_preset(name: str, **overrides) -> ModelConfig:
    """A fresh copy of a named preset, optionally with some fields changed."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return dataclasses.replace(PRESETS[name], **overrides)


def config_from_dict(d: dict) -> ModelConfig:
    """Rebuild a config from ``to_dict()`` output, rejecting unknown fields with a clear message."""
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"config has unknown fields {unknown}; was it written by a newer isvos-lite?")
    d = dict(d)
    # files written before the injection became a choice used the literal form of §3.2
    d.setdefault("qe_injection", "literal")
    return ModelConfig(**d)
