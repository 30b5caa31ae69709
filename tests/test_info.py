"""``isvos-lite info``: parameter counts per component, including the training-only class head."""

import json

from isvos_lite.cli import main
from isvos_lite.commands.info import count_parameters


def test_class_head_count_is_the_real_class_layer(tiny_model, tiny_cfg):
    counts = count_parameters(tiny_model)
    # class_embed = Linear(C_d, K + 1): weights and biases
    expected = tiny_cfg.hidden_dim * (tiny_cfg.num_classes + 1) + tiny_cfg.num_classes + 1
    assert counts["training_only_class_head"] == expected
    assert counts["total"] == sum(counts[name] for name in ("backbone", "pixel_decoder", "transformer_decoder",
                                                            "key_encoder", "value_encoder", "decoder"))


def test_info_json_paper_class_head(capsys):
    assert main(["info", "--preset", "paper", "--json"]) == 0
    params = json.loads(capsys.readouterr().out)["params"]
    assert params["training_only_class_head"] == 256 * 81 + 81 == 20_817
    assert 99e6 < params["total"] < 100.5e6
