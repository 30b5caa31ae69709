"""The assembled network: shapes, gradients reaching both branches, ablation switches, checkpoints."""

import json

import pytest
import torch

from isvos_lite.checkpoint import load_checkpoint, save_checkpoint
from isvos_lite.config import config_from_dict, get_preset
from isvos_lite.model.isvos import ISVOS


def _clip(B=2, T=3, H=64, W=96, O=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    frames = torch.rand(B, T, 3, H, W, generator=g)
    masks = torch.zeros(B, O, H, W)
    masks[:, 0, 10:30, 10:40] = 1
    masks[:, 1, 35:60, 50:90] = 1
    return frames, masks


def test_forward_clip_shapes_and_probabilities(tiny_model):
    frames, masks = _clip()
    out = tiny_model.forward_clip(frames, masks)
    assert out["logits"].shape == (2, 2, 3, 64, 96)
    torch.testing.assert_close(out["probs"].sum(2), torch.ones(2, 2, 64, 96))
    assert len(out["instance"]) == 3
    assert out["instance"][0]["pred_masks"].shape[:2] == (2, tiny_model.cfg.num_queries)


def test_training_forward_reaches_every_parameter(tiny_cfg):
    torch.manual_seed(0)
    model = ISVOS(tiny_cfg).train()
    for m in model.modules():      # "bn" backbones zero-init each block's last gamma: undo it so every conv gets a gradient
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.ones_(m.weight)
        if hasattr(m, "sampling_offsets"):   # Deformable-DETR init zeroes these weights, which blocks d(loss)/d(query)
            torch.nn.init.normal_(m.sampling_offsets.weight, std=0.01)
            torch.nn.init.normal_(m.attention_weights.weight, std=0.01)
    frames, masks = _clip(B=1)
    out = model.forward_clip(frames, masks)
    inst = model.forward_instance(frames[:, 0])
    loss = out["logits"].logsumexp(2).mean() + out["probs"][:, :, 1].mean()
    loss = loss + inst["pred_logits"].mean() + inst["pred_masks"].mean()
    loss = loss + sum(a["pred_logits"].mean() + a["pred_masks"].mean() for a in inst["aux_outputs"])
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
    assert no_grad == [], f"parameters without gradient: {no_grad[:10]}"


def test_odd_frame_size_runs_end_to_end(tiny_model):
    frames, masks = _clip(B=1, H=97, W=131)
    out = tiny_model.forward_clip(frames, masks)
    assert out["logits"].shape[-2:] == (97, 131)


@pytest.mark.parametrize("qe,mpf", [(False, True), (True, False), (False, False)])
def test_ablation_switches_change_parameters_and_outputs(qe, mpf):
    full = ISVOS(get_preset("tiny"))
    variant = ISVOS(get_preset("tiny", query_enhancement=qe, multi_path_fusion=mpf))
    full_keys, var_keys = set(full.state_dict()), set(variant.state_dict())
    assert var_keys < full_keys                          # the variant only removes parameters
    removed = full_keys - var_keys
    if not qe:
        assert any(k.startswith("key_encoder.") for k in removed)
    if not mpf:
        assert any(k.startswith("decoder.") for k in removed)
    # the variant's VOS path does not read what it switched off
    variant.eval()
    frames, masks = _clip(B=1)
    feats = variant.encode_frame(frames[:, 0])
    assert (feats.instance is None) == (not qe)
    assert (feats.pixel_features is None) == (not qe and not mpf)


def test_query_key_depends_on_is_branch_only_with_query_enhancement(tiny_model):
    frames, _ = _clip(B=1)
    f1 = tiny_model.encode_frame(frames[:, 0])
    with torch.no_grad():
        tiny_model.transformer_decoder.query_feat.weight.add_(1.0)
    f2 = tiny_model.encode_frame(frames[:, 0])
    with torch.no_grad():
        tiny_model.transformer_decoder.query_feat.weight.sub_(1.0)
    assert not torch.allclose(f1.key, f2.key)

    base = ISVOS(get_preset("tiny", query_enhancement=False)).eval()
    g1 = base.encode_frame(frames[:, 0])
    with torch.no_grad():
        base.transformer_decoder.query_feat.weight.add_(1.0)
    g2 = base.encode_frame(frames[:, 0])
    torch.testing.assert_close(g1.key, g2.key)


def test_normalize_accepts_uint8_and_rejects_bad_input(tiny_model):
    x = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)
    torch.testing.assert_close(tiny_model.normalize(x), tiny_model.normalize(x.float() / 255))
    with pytest.raises(ValueError, match="shape"):
        tiny_model.normalize(torch.rand(1, 4, 32, 32))
    with pytest.raises(ValueError, match="dtype"):
        tiny_model.normalize(torch.ones(1, 3, 8, 8, dtype=torch.int32))
    with pytest.raises(ValueError, match="at least 2 frames"):
        tiny_model.forward_clip(torch.rand(1, 1, 3, 32, 32), torch.zeros(1, 1, 32, 32))


def test_checkpoint_round_trip(tmp_path, tiny_model):
    path = save_checkpoint(tiny_model, tmp_path / "m.safetensors", meta={"step": 7})
    loaded = load_checkpoint(path)
    assert loaded.checkpoint_meta == {"step": 7}
    for (k, a), (_, b) in zip(tiny_model.state_dict().items(), loaded.state_dict().items()):
        torch.testing.assert_close(a, b, msg=k)
    assert config_from_dict(json.loads((tmp_path / "m.json").read_text())["config"]) == tiny_model.cfg


def test_checkpoint_bad_inputs(tmp_path, tiny_model):
    path = save_checkpoint(tiny_model, tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match="preset 'tiny', not 'lite'"):
        load_checkpoint(path, preset="lite")
    data = path.read_bytes()
    trunc = tmp_path / "t.safetensors"
    trunc.write_bytes(data[: len(data) // 2])
    (tmp_path / "t.json").write_text((tmp_path / "m.json").read_text())
    with pytest.raises(ValueError, match="truncated"):
        load_checkpoint(trunc)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors")
    other = tmp_path / "o.safetensors"
    other.write_bytes(data)
    side = json.loads((tmp_path / "m.json").read_text())
    side["config"]["num_queries"] = 5
    (tmp_path / "o.json").write_text(json.dumps(side))
    with pytest.raises(ValueError, match="wrong shape|does not fit|does not match the weights"):
        load_checkpoint(other)
    side["config"]["bogus"] = 1
    (tmp_path / "o.json").write_text(json.dumps(side))
    with pytest.raises(ValueError, match="unknown fields"):
        load_checkpoint(other)
