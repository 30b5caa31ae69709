"""Weight import from torchvision and detectron2 layouts. The files are written here in those external layouts,
with key names generated from a structural description (not from our modules), then loaded and checked."""

import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from isvos_lite.model.backbone import ResNet
from isvos_lite.model.pixel_decoder import MSDeformAttnPixelDecoder
from isvos_lite.model.transformer_decoder import MaskedTransformerDecoder
from isvos_lite.weights import LoadReport, load_mask2former_detectron2, load_torchvision_resnet

BLOCKS = {18: (2, 2, 2, 2), 50: (3, 4, 6, 3)}


def resnet_blocks(depth, width):
    """(stage 1..4, block index, in, planes, out, has_shortcut) for torchvision's ResNet layout."""
    expansion = 4 if depth == 50 else 1
    in_ch = width
    for stage, n in enumerate(BLOCKS[depth], start=1):
        planes = width * 2 ** (stage - 1)
        for b in range(n):
            yield stage, b, in_ch, planes, planes * expansion, b == 0 and (stage > 1 or in_ch != planes * expansion)
            in_ch = planes * expansion


def torchvision_checkpoint(depth, width=8, seed=0):
    """A state dict with torchvision's resnet key names (fc and num_batches_tracked included)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}

    def bn(prefix, c):
        sd[f"{prefix}.weight"] = torch.rand(c, generator=g) + 0.5
        sd[f"{prefix}.bias"] = torch.randn(c, generator=g)
        sd[f"{prefix}.running_mean"] = torch.randn(c, generator=g)
        sd[f"{prefix}.running_var"] = torch.rand(c, generator=g) + 0.5
        sd[f"{prefix}.num_batches_tracked"] = torch.tensor(100)

    sd["conv1.weight"] = torch.randn(width, 3, 7, 7, generator=g)
    bn("bn1", width)
    for stage, b, cin, planes, cout, shortcut in resnet_blocks(depth, width):
        p = f"layer{stage}.{b}"
        if depth == 50:
            convs = [(cin, planes, 1), (planes, planes, 3), (planes, cout, 1)]
        else:
            convs = [(cin, planes, 3), (planes, cout, 3)]
        for k, (i, o, ks) in enumerate(convs, start=1):
            sd[f"{p}.conv{k}.weight"] = torch.randn(o, i, ks, ks, generator=g) * 0.1
            bn(f"{p}.bn{k}", o)
        if shortcut:
            sd[f"{p}.downsample.0.weight"] = torch.randn(cout, cin, 1, 1, generator=g) * 0.1
            bn(f"{p}.downsample.1", cout)
    last = width * 8 * (4 if depth == 50 else 1)
    sd["fc.weight"] = torch.randn(1000, last, generator=g)
    sd["fc.bias"] = torch.randn(1000, generator=g)
    return sd


# --- torchvision -------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_torchvision_file_loads_and_values_land(tmp_path, suffix):
    checkpoint = torchvision_checkpoint(50)
    path = tmp_path / f"resnet50{suffix}"
    if suffix == ".pth":
        torch.save(checkpoint, path)
    else:
        save_file(checkpoint, str(path))
    net = ResNet(depth=50, width=8, norm="frozen_bn")
    report = load_torchvision_resnet(net, path, verbose=False)
    assert report.missing == [] and report.unexpected == [] and report.skipped_shape == []
    assert len(report.matched) == len(net.state_dict())
    assert any(d.startswith("fc.weight") for d in report.dropped)
    state = net.state_dict()
    for name in ("conv1.weight", "layer1.0.downsample.0.weight", "layer2.0.downsample.1.running_var",
                 "layer4.2.bn3.bias"):
        assert torch.equal(state[name], checkpoint[name])


def test_round_trip_through_our_state_dict(tmp_path):
    first = ResNet(depth=18, width=8, norm="frozen_bn").eval()
    load_torchvision_resnet(first, torchvision_checkpoint(18), verbose=False)
    save_file(first.state_dict(), str(tmp_path / "ours.safetensors"))
    second = ResNet(depth=18, width=8, norm="frozen_bn").eval()
    load_torchvision_resnet(second, tmp_path / "ours.safetensors", verbose=False)
    x = torch.randn(1, 3, 45, 61)
    for name, a in first(x).items():
        torch.testing.assert_close(second(x)[name], a)


def test_trainable_bn_keeps_the_counter():
    net = ResNet(depth=18, width=8, norm="bn")
    report = load_torchvision_resnet(net, torchvision_checkpoint(18), verbose=False)
    assert "layer1.0.bn1.num_batches_tracked" in report.matched
    assert net.layer1[0].bn1.num_batches_tracked.item() == 100


def test_five_channel_value_encoder_conv1(capsys):
    checkpoint = torchvision_checkpoint(18)
    net = ResNet(depth=18, width=8, in_channels=5, num_stages=3, norm="frozen_bn")
    report = load_torchvision_resnet(net, checkpoint)
    assert net.conv1.weight.shape == (8, 5, 7, 7)
    assert torch.equal(net.conv1.weight[:, :3], checkpoint["conv1.weight"])
    assert torch.count_nonzero(net.conv1.weight[:, 3:]) == 0
    assert len(report.adapted) == 1 and report.adapted[0].startswith("conv1.weight")
    assert any(d.startswith("layer4.") for d in report.dropped) and report.unexpected == []
    assert "matched" in capsys.readouterr().out


def test_unknown_and_mismatched_keys_are_reported():
    checkpoint = torchvision_checkpoint(18)
    checkpoint["extra.head.weight"] = torch.zeros(3)
    checkpoint["layer3.1.conv2.weight"] = torch.zeros(7, 7, 3, 3)
    net = ResNet(depth=18, width=8)
    before = net.layer3[1].conv2.weight.clone()
    report = load_torchvision_resnet(net, checkpoint, verbose=False)
    assert report.unexpected == ["extra.head.weight"]
    assert len(report.skipped_shape) == 1 and "layer3.1.conv2.weight" in report.skipped_shape[0]
    assert torch.equal(net.layer3[1].conv2.weight, before)
    assert "skipped (shape) 1" in str(report)


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        load_torchvision_resnet(ResNet(depth=18, width=8), tmp_path / "nowhere.pth")
    torch.save({"encoder.weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match=r"other\.pth.*layer1\.0\.conv1\.weight"):
        load_torchvision_resnet(ResNet(depth=18, width=8), tmp_path / "other.pth")
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="text.pth"):
        load_torchvision_resnet(ResNet(depth=18, width=8), tmp_path / "text.pth")


# --- detectron2 Mask2Former --------------------------------------------------------------------------

# Tiny sizes; the names are Mask2Former's. R50 layout with stem width 8.
W, CD, ENC, HEADS, POINTS, FFN_ENC, Q, DEC, FFN_DEC, K = 8, 16, 2, 2, 2, 32, 6, 3, 32, 3


def detectron2_mask2former_names(num_classes=K):
    """{detectron2 name: shape} of a Mask2Former R50 checkpoint, from the published module structure."""
    names = {"backbone.stem.conv1.weight": (W, 3, 7, 7)}
    norm = lambda p, c: {f"{p}.norm.{n}": (c,) for n in ("weight", "bias", "running_mean", "running_var")}
    names.update(norm("backbone.stem.conv1", W))
    for stage, b, cin, planes, cout, shortcut in resnet_blocks(50, W):
        p = f"backbone.res{stage + 1}.{b}"
        for k, (i, o, ks) in enumerate([(cin, planes, 1), (planes, planes, 3), (planes, cout, 1)], start=1):
            names[f"{p}.conv{k}.weight"] = (o, i, ks, ks)
            names.update(norm(f"{p}.conv{k}", o))
        if shortcut:
            names[f"{p}.shortcut.weight"] = (cout, cin, 1, 1)
            names.update(norm(f"{p}.shortcut", cout))
    pd = "sem_seg_head.pixel_decoder"
    for level, cin in enumerate((W * 32, W * 16, W * 8)):          # res5, res4, res3
        names[f"{pd}.input_proj.{level}.0.weight"] = (CD, cin, 1, 1)
        names[f"{pd}.input_proj.{level}.0.bias"] = (CD,)
        names[f"{pd}.input_proj.{level}.1.weight"] = (CD,)
        names[f"{pd}.input_proj.{level}.1.bias"] = (CD,)
    names[f"{pd}.transformer.level_embed"] = (3, CD)
    linear = lambda p, i, o: {f"{p}.weight": (o, i), f"{p}.bias": (o,)}
    layer_norm = lambda p: {f"{p}.weight": (CD,), f"{p}.bias": (CD,)}
    for i in range(ENC):
        p = f"{pd}.transformer.encoder.layers.{i}"
        names.update(linear(f"{p}.self_attn.sampling_offsets", CD, HEADS * 3 * POINTS * 2))
        names.update(linear(f"{p}.self_attn.attention_weights", CD, HEADS * 3 * POINTS))
        names.update(linear(f"{p}.self_attn.value_proj", CD, CD))
        names.update(linear(f"{p}.self_attn.output_proj", CD, CD))
        names.update(layer_norm(f"{p}.norm1")), names.update(layer_norm(f"{p}.norm2"))
        names.update(linear(f"{p}.linear1", CD, FFN_ENC)), names.update(linear(f"{p}.linear2", FFN_ENC, CD))
    names[f"{pd}.adapter_1.weight"] = (CD, W * 4, 1, 1)
    names.update(layer_norm(f"{pd}.adapter_1.norm"))
    names[f"{pd}.layer_1.weight"] = (CD, CD, 3, 3)
    names.update(layer_norm(f"{pd}.layer_1.norm"))
    names.update(linear(f"{pd}.mask_features", CD, CD) | {f"{pd}.mask_features.weight": (CD, CD, 1, 1)})
    pr = "sem_seg_head.predictor"
    names.update({f"{pr}.query_feat.weight": (Q, CD), f"{pr}.query_embed.weight": (Q, CD),
                  f"{pr}.level_embed.weight": (3, CD)})
    names.update(layer_norm(f"{pr}.decoder_norm"))
    for i in range(DEC):
        for group, attn in (("transformer_self_attention_layers", "self_attn"),
                            ("transformer_cross_attention_layers", "multihead_attn")):
            p = f"{pr}.{group}.{i}"
            names[f"{p}.{attn}.in_proj_weight"] = (3 * CD, CD)
            names[f"{p}.{attn}.in_proj_bias"] = (3 * CD,)
            names.update(linear(f"{p}.{attn}.out_proj", CD, CD))
            names.update(layer_norm(f"{p}.norm"))
        p = f"{pr}.transformer_ffn_layers.{i}"
        names.update(linear(f"{p}.linear1", CD, FFN_DEC)), names.update(linear(f"{p}.linear2", FFN_DEC, CD))
        names.update(layer_norm(f"{p}.norm"))
    names.update(linear(f"{pr}.class_embed", CD, num_classes + 1))
    for j in range(3):
        names.update(linear(f"{pr}.mask_embed.layers.{j}", CD, CD))
    names["criterion.empty_weight"] = (num_classes + 1,)
    return names


def write_detectron2_pickle(path, num_classes=K, seed=0):
    rng = np.random.default_rng(seed)
    model = {name: rng.standard_normal(shape).astype(np.float32)
             for name, shape in detectron2_mask2former_names(num_classes).items()}
    with open(path, "wb") as f:
        pickle.dump({"model": model, "__author__": "test"}, f)
    return model


def tiny_is_branch(num_classes=K):
    backbone = ResNet(depth=50, width=W, norm="frozen_bn")
    pixel = MSDeformAttnPixelDecoder(backbone.channels, CD, CD, ENC, HEADS, POINTS, FFN_ENC)
    decoder = MaskedTransformerDecoder(CD, Q, DEC, HEADS, FFN_DEC, num_classes, CD)
    return backbone, pixel, decoder


def test_detectron2_checkpoint_lands_everywhere(tmp_path, capsys):
    model = write_detectron2_pickle(tmp_path / "model_final_test.pkl")
    backbone, pixel, decoder = tiny_is_branch()
    report = load_mask2former_detectron2(tmp_path / "model_final_test.pkl", backbone, pixel, decoder)
    assert "matched" in capsys.readouterr().out
    assert report.missing == [] and report.unexpected == [] and report.skipped_shape == []
    assert len(report.matched) == len(model) - 1 and report.dropped[0].startswith("criterion.empty_weight")
    pairs = {
        "backbone.stem.conv1.norm.running_var": backbone.bn1.running_var,
        "backbone.res3.0.shortcut.norm.running_var": backbone.layer2[0].downsample[1].running_var,
        "backbone.res5.2.conv3.weight": backbone.layer4[2].conv3.weight,
        "sem_seg_head.pixel_decoder.input_proj.0.0.weight": pixel.input_proj[0][0].weight,
        "sem_seg_head.pixel_decoder.transformer.level_embed": pixel.level_embed,
        "sem_seg_head.pixel_decoder.transformer.encoder.layers.1.self_attn.sampling_offsets.weight":
            pixel.encoder_layers[1].self_attn.sampling_offsets.weight,
        "sem_seg_head.pixel_decoder.adapter_1.norm.weight": pixel.lateral_conv[1].weight,
        "sem_seg_head.pixel_decoder.layer_1.weight": pixel.output_conv[0].weight,
        "sem_seg_head.predictor.transformer_cross_attention_layers.2.multihead_attn.in_proj_weight":
            decoder.transformer_cross_attention_layers[2].multihead_attn.in_proj_weight,
        "sem_seg_head.predictor.query_feat.weight": decoder.query_feat.weight,
        "sem_seg_head.predictor.class_embed.bias": decoder.instance_head.class_embed.bias,
        "sem_seg_head.predictor.mask_embed.layers.2.weight": decoder.instance_head.mask_embed.layers[2].weight,
    }
    for name, ours in pairs.items():
        assert torch.equal(ours.detach(), torch.from_numpy(model[name])), name
    # Every tensor of the file went somewhere: the totals agree.
    file_total = sum(float(v.astype(np.float64).sum()) for k, v in model.items() if not k.startswith("criterion"))
    ours_total = sum(float(t.double().sum()) for m in (backbone, pixel, decoder) for t in m.state_dict().values())
    assert ours_total == pytest.approx(file_total, rel=1e-9, abs=1e-6)
    # And the loaded branch runs.
    mask_features, pyramid = pixel(backbone(torch.rand(1, 3, 64, 96)))
    assert decoder(pyramid, mask_features)["pred_masks"].shape == (1, Q, 16, 24)


def test_detectron2_class_head_with_other_class_count_is_skipped(tmp_path):
    write_detectron2_pickle(tmp_path / "coco.pkl", num_classes=80)
    backbone, pixel, decoder = tiny_is_branch(num_classes=K)
    before = decoder.instance_head.class_embed.weight.clone()
    report = load_mask2former_detectron2(tmp_path / "coco.pkl", backbone, pixel, decoder, verbose=False)
    assert len(report.skipped_shape) == 2
    assert all("80 classes" in s and "class_embed" in s for s in report.skipped_shape)
    assert torch.equal(decoder.instance_head.class_embed.weight, before)
    assert report.missing == []      # the file had the class head; it is reported as skipped, not missing
    assert len(report.matched) == len(detectron2_mask2former_names()) - 3


def test_detectron2_backbone_only_and_bad_files(tmp_path):
    write_detectron2_pickle(tmp_path / "m.pkl")
    backbone = ResNet(depth=50, width=W)
    report = load_mask2former_detectron2(tmp_path / "m.pkl", backbone, None, None, verbose=False)
    assert report.missing == [] and report.unexpected == []
    assert any("no pixel_decoder module" in d for d in report.dropped)
    with pytest.raises(FileNotFoundError, match="absent.pkl"):
        load_mask2former_detectron2(tmp_path / "absent.pkl", backbone, None, None)
    with open(tmp_path / "wrong.pkl", "wb") as f:
        pickle.dump({"model": {"head.weight": np.zeros(3, np.float32)}}, f)
    with pytest.raises(ValueError, match=r"wrong\.pkl.*backbone\.res2\.0\.conv1\.weight"):
        load_mask2former_detectron2(tmp_path / "wrong.pkl", backbone, None, None)


def test_load_report_summary_lists_names():
    report = LoadReport(matched=["a"], missing=["b", "c"], unexpected=["d"])
    text = report.summary()
    assert text.startswith("matched 1, missing 2, unexpected 1") and "    b\n    c" in text and "    d" in text
