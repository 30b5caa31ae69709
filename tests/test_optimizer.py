"""The AdamW groups: 0.1x for what came from Mask2Former, and the Mask2Former / Deformable-DETR conventions."""

import pytest
import torch
from torch import nn

from isvos_lite.config import get_preset
from isvos_lite.model.isvos import ISVOS
from isvos_lite.train.config import get_train_preset, train_config_from_dict
from isvos_lite.train.optimizer import build_optimizer
from isvos_lite.train.trainer import RECIPE_FIELDS


def _by_parameter(optimizer):
    """id(parameter) -> (lr, weight_decay, group name); every parameter must be in exactly one group."""
    table = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            assert id(p) not in table, "a parameter is in two groups"
            table[id(p)] = (group["lr"], group["weight_decay"], group["name"])
    return table


def test_paper_groups_follow_the_paper_and_the_references():
    cfg = get_train_preset("paper")
    model = ISVOS(get_preset("tiny"))
    optimizer = build_optimizer(model, 2e-5, cfg.instance_lr_scale, cfg.weight_decay, cfg.instance_lr_modules,
                                cfg.offset_lr_scale, cfg.decay_all_parameters)
    table = _by_parameter(optimizer)
    assert len(table) == len(list(model.parameters()))
    assert optimizer.param_groups[0]["name"] == "vos" and optimizer.param_groups[0]["lr"] == pytest.approx(2e-5)
    named = dict(model.named_parameters())

    def lr(name):
        return table[id(named[name])][0]

    def decay(name):
        return table[id(named[name])][1]

    # 0.1x for everything loaded from Mask2Former (backbone, pixel decoder, transformer decoder), 1x for the rest
    assert lr("backbone.conv1.weight") == pytest.approx(2e-6)
    assert lr("pixel_decoder.mask_features.weight") == pytest.approx(2e-6)
    assert lr("transformer_decoder.instance_head.class_embed.weight") == pytest.approx(2e-6)
    assert lr("key_encoder.key_proj.weight") == pytest.approx(2e-5)
    value_weight = next(n for n in named if n.startswith("value_encoder") and n.endswith("conv1.weight"))
    assert lr(value_weight) == pytest.approx(2e-5)
    # sampling offsets at 0.1x of the base rate, not compounded with the Mask2Former factor
    offsets = [n for n in named if ".sampling_offsets." in n]
    assert any(n.startswith("key_encoder") for n in offsets) and any(n.startswith("pixel_decoder") for n in offsets)
    for name in offsets:
        assert lr(name) == pytest.approx(2e-6), name
    # no weight decay on norms, embeddings, biases; decay on conv / linear weights
    for module_name, module in model.named_modules():
        if isinstance(module, (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm2d, nn.Embedding)):
            for p_name, _ in module.named_parameters(recurse=False):
                assert decay(f"{module_name}.{p_name}") == 0.0, f"{module_name}.{p_name}"
    for name in ("pixel_decoder.level_embed", "transformer_decoder.query_feat.weight",
                 "transformer_decoder.level_embed.weight", "key_encoder.key_proj.bias"):
        assert decay(name) == 0.0, name
    for name in ("backbone.conv1.weight", "key_encoder.key_proj.weight", "transformer_decoder.instance_head.class_embed.weight"):
        assert decay(name) == pytest.approx(0.05), name


def test_lite_groups_are_unchanged():
    cfg = get_train_preset("lite")
    model = ISVOS(get_preset("tiny"))
    optimizer = build_optimizer(model, 1e-3, cfg.instance_lr_scale, cfg.weight_decay, cfg.instance_lr_modules,
                                cfg.offset_lr_scale, cfg.decay_all_parameters)
    assert [g["name"] for g in optimizer.param_groups] == ["vos", "instance"]
    scaled = {id(p) for m in (model.pixel_decoder, model.transformer_decoder) for p in m.parameters()}
    assert {id(p) for p in optimizer.param_groups[1]["params"]} == scaled
    assert all(g["weight_decay"] == 0.05 for g in optimizer.param_groups)


def test_the_optimizer_fields_survive_a_resume_round_trip_and_are_recipe_fields():
    for name in ("paper", "lite"):
        cfg = get_train_preset(name)
        assert train_config_from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()
    assert {"instance_lr_modules", "offset_lr_scale", "decay_all_parameters"} <= set(RECIPE_FIELDS)
    with pytest.raises(ValueError, match="not modules of the model"):
        get_train_preset("lite", instance_lr_modules=("backbone", "memory"))
