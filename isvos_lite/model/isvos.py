"""The whole ISVOS network (paper §3, Fig. 3): one shared backbone feeding two branches.

Reading order of one frame (see ``encode_frame``):

1. ``backbone``             ResNet -> res2 (s4), res3 (s8), res4 (s16), res5 (s32)         §3, "F_res4"
2. ``pixel_decoder``        deformable-attention encoder -> P = (s32, s16, s8) and F_pixel (s4)      §3.1
3. ``transformer_decoder``  masked attention (Eq. 1) over P -> object queries q̃_ins (+ IS predictions) §3.1
4. ``key_encoder``          Enhanced Key Encoder: Q_g, q̃_vos (Eq. 2), injection -> query key Q       §3.2
5. memory reading           L2 affinity (Eq. 3) against the memory keys -> readout F_mem             §3.2
6. ``decoder``              Multi-Path Fusion (Eq. 4) over F_mem, B = (res4, res3, res2), P -> logits §3.3
7. soft aggregation         per-object probabilities -> one distribution over (background, objects)
8. ``value_encoder``        (memory frames) frame + predicted soft masks + res4 -> memory value      §3.2

Ablation switches (Table 3): ``cfg.query_enhancement = False`` makes the key a projection of Q_g alone
(the transformer decoder is then not needed at inference); ``cfg.multi_path_fusion = False`` makes the
decoder fuse backbone skips only (the pixel-decoder features are then not needed at inference).
The instance-segmentation branch is still trained jointly (``forward_instance``) in every variant.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from isvos_lite.config import ModelConfig
from isvos_lite.model.aggregate import aggregate
from isvos_lite.model.backbone import ResNet
from isvos_lite.model.key_encoder import EnhancedKeyEncoder, qe_alignment_loss
from isvos_lite.model.memory import read_memory
from isvos_lite.model.mpf_decoder import MPFDecoder
from isvos_lite.model.pixel_decoder import MSDeformAttnPixelDecoder
from isvos_lite.model.transformer_decoder import MaskedTransformerDecoder
from isvos_lite.model.value_encoder import ValueEncoder

__all__ = ["ISVOS", "FrameFeatures", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class FrameFeatures:
    """Everything computed once per frame, before memory reading. Shapes for a batch of B frames."""

    image: torch.Tensor                      # (B, 3, H, W) normalised
    res2: torch.Tensor                       # (B, c2, H/4, W/4)    B_2 of the MPF decoder
    res3: torch.Tensor                       # (B, c3, H/8, W/8)    B_1
    res4: torch.Tensor                       # (B, c4, H/16, W/16)  B_0 and F_res4
    key: torch.Tensor                        # (B, C_k, H/16, W/16) query key Q (also the memory key)
    pixel_features: list[torch.Tensor] | None = None   # [P_s32, P_s16, P_s8], each (B, C_d, h, w)
    mask_features: torch.Tensor | None = None          # (B, C_eps, H/4, W/4)  F_pixel
    instance: dict | None = None             # transformer-decoder outputs (queries, pred_logits, pred_masks, ...)
    key_extras: dict = field(default_factory=dict)     # Q_g, q_vos, instance_maps, reference_points


class ISVOS(nn.Module):
    """ISVOS: instance-segmentation branch + memory-based VOS branch on one ResNet backbone."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone = ResNet(cfg.backbone_depth, cfg.backbone_width, in_channels=3, norm=cfg.backbone_norm, num_stages=4)
        ch = self.backbone.channels  # {"res2": c2, "res3": c3, "res4": c4, "res5": c5}

        # instance segmentation branch (§3.1)
        self.pixel_decoder = MSDeformAttnPixelDecoder(
            ch, cfg.hidden_dim, cfg.mask_dim, cfg.pixel_decoder_layers, cfg.num_heads, cfg.deform_points,
            cfg.pixel_decoder_ffn_dim,
        )
        self.transformer_decoder = MaskedTransformerDecoder(
            cfg.hidden_dim, cfg.num_queries, cfg.decoder_layers, cfg.num_heads, cfg.decoder_ffn_dim,
            cfg.num_classes, cfg.mask_dim, mask_iou_head=cfg.mask_iou_head,
        )

        # video object segmentation branch (§3.2, §3.3)
        self.key_encoder = EnhancedKeyEncoder(
            ch["res4"], cfg.hidden_dim, cfg.key_dim, cfg.num_queries, cfg.num_heads, cfg.deform_points,
            cfg.eke_ffn_dim, query_enhancement=cfg.query_enhancement, injection=cfg.qe_injection,
            tau_max=cfg.qe_tau_max, tau_init=cfg.qe_tau_init, balance=cfg.qe_balance,
        )
        self.value_encoder = ValueEncoder(
            cfg.value_dim, ch["res4"], depth=cfg.value_backbone_depth, width=cfg.value_backbone_width,
            norm=cfg.backbone_norm,
        )
        self.decoder = MPFDecoder(
            cfg.value_dim, (ch["res4"], ch["res3"], ch["res2"]), cfg.hidden_dim, cfg.decoder_dims,
            multi_path_fusion=cfg.multi_path_fusion,
        )

        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    # ------------------------------------------------------------------ input
    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) uint8 in 0..255 or float in [0, 1] -> ImageNet-normalised float."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must have shape (B, 3, H, W), got {tuple(images.shape)}")
        if images.dtype == torch.uint8:
            images = images.float() / 255.0
        elif not images.is_floating_point():
            raise ValueError(f"images must be uint8 (0..255) or float (0..1), got dtype {images.dtype}")
        images = images.to(self.pixel_mean.dtype)
        return (images - self.pixel_mean) / self.pixel_std

    @property
    def needs_instance_branch(self) -> bool:
        """Whether the VOS path itself reads the IS branch (QE needs queries, MPF needs P)."""
        return self.cfg.query_enhancement or self.cfg.multi_path_fusion

    # ------------------------------------------------------------------ per frame
    def encode_frame(self, images: torch.Tensor, normalized: bool = False, with_instance: bool = False) -> FrameFeatures:
        """Backbone, IS branch and Enhanced Key Encoder for a batch of frames (B, 3, H, W).

        The IS branch runs as far as the VOS path needs it (pixel decoder for MPF; pixel + transformer decoder for
        QE); ``with_instance=True`` runs all of it anyway (for visualising the instance predictions).
        """
        image = images if normalized else self.normalize(images)
        feats = self.backbone(image)
        run_decoder = with_instance or self.cfg.query_enhancement
        run_pixel = run_decoder or self.cfg.multi_path_fusion
        mask_features = pixel_features = instance = None
        if run_pixel:
            mask_features, pixel_features = self.pixel_decoder(feats)
        if run_decoder:
            instance = self.transformer_decoder(pixel_features, mask_features)
        key_out = self.key_encoder(
            feats["res4"],
            instance["queries"] if instance is not None else None,
            instance["query_pos"] if instance is not None else None,
            instance["pred_masks"] if instance is not None else None,
        )
        extras = {k: v for k, v in key_out.items() if k != "key"}
        return FrameFeatures(
            image=image, res2=feats["res2"], res3=feats["res3"], res4=feats["res4"], key=key_out["key"],
            pixel_features=pixel_features, mask_features=mask_features, instance=instance, key_extras=extras,
        )

    def encode_value(self, frame: FrameFeatures, masks: torch.Tensor) -> torch.Tensor:
        """Memory value of a frame from (soft) object masks (B, O, H, W) -> (B, O, C_v, H/16, W/16)."""
        return self.value_encoder(frame.image, masks, frame.res4)

    def read(self, frame: FrameFeatures, mem_key: torch.Tensor, mem_value: torch.Tensor, top_k: int | None = None):
        """Eq. (3): readout F_mem (B, O, C_v, h, w) and affinity (B, T*h*w, h*w) from memory keys/values.

        mem_key: (B, C_k, T, h, w); mem_value: (B, O, C_v, T, h, w). ``top_k=None`` is the full softmax (training).
        """
        return read_memory(frame.key, mem_key, mem_value, top_k=top_k)

    def segment(self, frame: FrameFeatures, readout: torch.Tensor, return_features: bool = False):
        """MPF decoder (Eq. 4) -> per-object logits at the input size (B, O, H, W), bilinear from stride 4."""
        skips = (frame.res4, frame.res3, frame.res2)
        pixel = frame.pixel_features if self.cfg.multi_path_fusion else None
        if return_features:
            logits, stages = self.decoder(readout, skips, pixel, return_features=True)
        else:
            logits, stages = self.decoder(readout, skips, pixel), None
        logits = F.interpolate(logits, size=frame.image.shape[-2:], mode="bilinear", align_corners=False)
        return (logits, stages) if return_features else logits

    # ------------------------------------------------------------------ training entry points
    def forward_instance(self, images: torch.Tensor) -> dict:
        """IS branch alone on still images (the COCO-style auxiliary task, §3.3, §4.1)."""
        image = self.normalize(images)
        feats = self.backbone(image)
        mask_features, pixel_features = self.pixel_decoder(feats)
        return self.transformer_decoder(pixel_features, mask_features)

    def forward_clip(self, frames: torch.Tensor, first_masks: torch.Tensor, selector: torch.Tensor | None = None) -> dict:
        """One training pass over a clip: frame 0 is given, frames 1..T-1 are predicted from memory.

        frames: (B, T, 3, H, W) in [0, 1]; first_masks: (B, O, H, W) 0/1 masks of frame 0;
        selector: (B, O), 1 for real objects and 0 for padding (their probabilities are zeroed).
        Every predicted frame is written to memory from its *soft* prediction (§3.2 "Memory Update": during training
        memory is updated after every frame). The affinity is the full softmax (no top-k) as in the references.

        Returns {"logits": (B, T-1, O+1, H, W) aggregated logits (CE input), "probs": same after softmax,
                 "instance": list over the T frames of transformer-decoder outputs (or None when not computed),
                 "qe_align": the EKE's map-to-mask alignment loss over all B*T frames (None without QE)}.
        """
        if frames.dim() != 5 or frames.shape[2] != 3:
            raise ValueError(f"frames must have shape (B, T, 3, H, W), got {tuple(frames.shape)}")
        B, T = frames.shape[:2]
        if T < 2:
            raise ValueError(f"a training clip needs at least 2 frames, got T={T}")
        if first_masks.dim() != 4 or first_masks.shape[0] != B or first_masks.shape[-2:] != frames.shape[-2:]:
            raise ValueError(f"first_masks must have shape (B, O, H, W) = ({B}, O, {frames.shape[-2]}, {frames.shape[-1]}), "
                             f"got {tuple(first_masks.shape)}")
        O = first_masks.shape[1]
        if selector is None:
            selector = torch.ones(B, O, device=frames.device, dtype=first_masks.dtype)
        sel = selector.view(B, O, 1, 1).to(first_masks.dtype)

        # one batched pass of the per-frame encoders over all B*T frames
        allf = self.encode_frame(frames.flatten(0, 1))
        per_t = [_index_frame(allf, B, T, t) for t in range(T)]

        mem_keys = [per_t[0].key]                                        # each (B, C_k, h, w)
        mem_values = [self.encode_value(per_t[0], first_masks * sel)]     # each (B, O, C_v, h, w)
        logits_out, probs_out = [], []
        for t in range(1, T):
            frame = per_t[t]
            readout, _ = self.read(frame, torch.stack(mem_keys, 2), torch.stack(mem_values, 3), top_k=None)
            obj_logits = self.segment(frame, readout)                    # (B, O, H, W)
            prob = torch.sigmoid(obj_logits) * sel
            agg_logits, agg_probs = aggregate(prob)                      # (B, O+1, H, W) each
            logits_out.append(agg_logits)
            probs_out.append(agg_probs)
            if t < T - 1:
                mem_keys.append(frame.key)
                mem_values.append(self.encode_value(frame, agg_probs[:, 1:]))
        instance = [f.instance for f in per_t] if allf.instance is not None else None
        qe_align = None
        if allf.key_extras.get("map_logits") is not None:
            qe_align = qe_alignment_loss(allf.key_extras["map_logits"], allf.instance["pred_masks"],
                                         allf.instance["pred_logits"])
        return {"logits": torch.stack(logits_out, 1), "probs": torch.stack(probs_out, 1), "instance": instance,
                "qe_align": qe_align}


def _index_frame(f: FrameFeatures, B: int, T: int, t: int) -> FrameFeatures:
    """Frame t of a (B*T)-batched FrameFeatures, as a B-batched one."""

    def pick(x):
        if x is None:
            return None
        if isinstance(x, torch.Tensor):
            return x.view(B, T, *x.shape[1:])[:, t] if x.dim() > 0 and x.shape[0] == B * T else x
        if isinstance(x, list):
            return [pick(v) for v in x]
        if isinstance(x, dict):
            return {k: pick(v) for k, v in x.items()}
        return x

    return FrameFeatures(
        image=pick(f.image), res2=pick(f.res2), res3=pick(f.res3), res4=pick(f.res4), key=pick(f.key),
        pixel_features=pick(f.pixel_features), mask_features=pick(f.mask_features), instance=pick(f.instance),
        key_extras=pick(f.key_extras),
    )
