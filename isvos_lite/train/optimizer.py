"""The AdamW parameter groups of §4.1, and the Mask2Former / Deformable-DETR conventions where the paper is silent.

The paper: "We load the COCO-pretrained Mask2Former to initialize our instance segmentation branch, and use
0.1× learning rate for these parameters" with AdamW, weight decay 0.05. We read "these parameters" as **everything
that came from Mask2Former**: its backbone, pixel decoder and transformer decoder (``load_mask2former_detectron2``
loads all three). Mask2Former itself trains its backbone at 0.1× too, so the backbone would be protected either
way. Everything new in ISVOS (Enhanced Key Encoder, value encoder, MPF decoder) trains at the full rate.

Where the paper says nothing we follow the references it builds on (``reference/peers.md`` §3.5, §4.3):

* **no weight decay** on normalisation layers (LayerNorm, GroupNorm, BatchNorm) and embeddings (``nn.Embedding``:
  the object queries and level embeddings; the pixel decoder's ``level_embed``), as Mask2Former does
  (``WEIGHT_DECAY_NORM = WEIGHT_DECAY_EMBED = 0``), and none on biases and scalar parameters (the EKE's
  temperature), the usual AdamW practice (Mask2Former itself decays biases; decaying a bias or a temperature
  towards 0 has no regularising meaning);
* the deformable attention's ``sampling_offsets`` at **0.1× the base learning rate** (Deformable DETR's
  ``lr_linear_proj_mult``): offsets are in pixels, so a large step moves every sampling point at once. The factor
  does not compound with the 0.1× of the Mask2Former parameters (the pixel decoder's offsets stay at 0.1×, not
  0.01×, which would freeze them in practice).

The ``paper`` training preset uses all of this; ``lite`` keeps the recipe its shipped checkpoints were trained with
(pixel and transformer decoder at 0.1× after the instance stage, the backbone at the full rate, weight decay on
every parameter, offsets at the full rate): a 2 M-parameter model trained from scratch on the teaching world, where
the 2,500-iteration instance stage is not a converged COCO model worth protecting in the backbone, and changing the
recipe would make ``checkpoints/README.md``'s commands stop reproducing the shipped files.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["NO_DECAY_MODULES", "parameter_groups", "build_optimizer", "set_learning_rate"]

NO_DECAY_MODULES = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm, nn.Embedding)
NO_DECAY_NAMES = ("level_embed",)        # learned embeddings stored as a bare nn.Parameter


def _no_decay_ids(model: nn.Module) -> set[int]:
    """ids of the parameters that get no weight decay: norms, embeddings, biases, scalars."""
    ids = set()
    for module in model.modules():
        if isinstance(module, NO_DECAY_MODULES):
            ids |= {id(p) for p in module.parameters(recurse=False)}
    for name, parameter in model.named_parameters():
        if parameter.dim() <= 1 or name.rsplit(".", 1)[-1] in NO_DECAY_NAMES:
            ids.add(id(parameter))         # biases, 1-D norm affines, scalars; level embeddings
    return ids


def parameter_groups(model: nn.Module, lr: float, weight_decay: float, scaled_modules=("pixel_decoder",
                     "transformer_decoder"), module_lr_scale: float = 0.1, offset_lr_scale: float = 1.0,
                     decay_all: bool = True) -> list[dict]:
    """AdamW parameter groups.

    Args:
        model: the network (its top-level children are ``backbone``, ``pixel_decoder``, ...).
        lr: the base learning rate.
        weight_decay: AdamW weight decay of the decayed parameters.
        scaled_modules: top-level modules trained at ``module_lr_scale`` × lr (the pretrained Mask2Former parts).
        module_lr_scale: their factor (1.0 in the instance stage, where they are what is being trained).
        offset_lr_scale: factor of every ``sampling_offsets`` parameter (Deformable DETR: 0.1); not compounded
            with ``module_lr_scale``: the smaller of the two applies.
        decay_all: True: weight decay on every parameter; False: none on norms, embeddings, biases and scalars.

    Returns:
        groups ``{"params", "lr", "base_lr", "weight_decay", "name"}``; the first is the base-rate decayed group
        ("vos"). Names: "vos" / "instance" (the scaled modules), with "/offsets" and "/no_decay" suffixes.
    """
    no_decay = set() if decay_all else _no_decay_ids(model)
    groups: dict[tuple[str, bool, bool], list[nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        scaled = name.split(".")[0] in scaled_modules
        offsets = offset_lr_scale != 1.0 and ".sampling_offsets." in f".{name}"
        key = ("instance" if scaled else "vos", offsets, id(parameter) in no_decay)
        groups.setdefault(key, []).append(parameter)
    ordered = sorted(groups, key=lambda k: (k[0] != "vos", k[1], k[2]))    # base-rate decayed group first
    result = []
    for branch, offsets, exempt in ordered:
        scale = module_lr_scale if branch == "instance" else 1.0
        if offsets:
            scale = min(scale, offset_lr_scale)
        name = branch + ("/offsets" if offsets else "") + ("/no_decay" if exempt else "")
        result.append({"params": groups[(branch, offsets, exempt)], "lr": lr * scale, "base_lr": lr * scale,
                       "weight_decay": 0.0 if exempt else weight_decay, "name": name})
    return result


def build_optimizer(model: nn.Module, lr: float, instance_lr_scale: float, weight_decay: float,
                    scaled_modules=("pixel_decoder", "transformer_decoder"), offset_lr_scale: float = 1.0,
                    decay_all: bool = True) -> torch.optim.AdamW:
    """AdamW over :func:`parameter_groups` (the defaults: the IS branch at ``instance_lr_scale`` × lr, everything
    else at lr, weight decay everywhere — the ``lite`` recipe)."""
    groups = parameter_groups(model, lr, weight_decay, scaled_modules, instance_lr_scale, offset_lr_scale, decay_all)
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)


def set_learning_rate(optimizer: torch.optim.Optimizer, factor: float) -> None:
    """Every group at its own base rate × ``factor`` (the step-decay schedule)."""
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor
