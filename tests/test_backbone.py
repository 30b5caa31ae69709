"""The shared ResNet backbone: shapes, torchvision-compatible names and sizes, frozen BatchNorm."""

import pytest
import torch
from torch import nn

from isvos_lite.model.backbone import FrozenBatchNorm2d, ResNet


def torchvision_resnet_keys(depth: int) -> dict[str, tuple[int, ...]]:
    """The state-dict keys and shapes of torchvision's resnet{depth}() without fc, written from the
    architecture table of He et al. (2016), independently of our module."""
    blocks = {18: (2, 2, 2, 2), 50: (3, 4, 6, 3)}[depth]
    bottleneck = depth == 50
    keys: dict[str, tuple[int, ...]] = {}

    def bn(prefix: str, c: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            keys[f"{prefix}.{name}"] = (c,)
        keys[f"{prefix}.num_batches_tracked"] = ()

    keys["conv1.weight"] = (64, 3, 7, 7)
    bn("bn1", 64)
    in_ch = 64
    for stage, n in enumerate(blocks):
        planes = 64 * 2 ** stage
        out_ch = planes * (4 if bottleneck else 1)
        for b in range(n):
            p = f"layer{stage + 1}.{b}"
            if bottleneck:
                keys[f"{p}.conv1.weight"] = (planes, in_ch, 1, 1)
                keys[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
                keys[f"{p}.conv3.weight"] = (out_ch, planes, 1, 1)
                bn(f"{p}.bn1", planes), bn(f"{p}.bn2", planes), bn(f"{p}.bn3", out_ch)
            else:
                keys[f"{p}.conv1.weight"] = (planes, in_ch, 3, 3)
                keys[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
                bn(f"{p}.bn1", planes), bn(f"{p}.bn2", planes)
            if b == 0 and (stage > 0 or in_ch != out_ch):
                keys[f"{p}.downsample.0.weight"] = (out_ch, in_ch, 1, 1)
                bn(f"{p}.downsample.1", out_ch)
            in_ch = out_ch
    return keys


@pytest.mark.parametrize("depth", [18, 34, 50])
def test_output_shapes_at_odd_size(depth):
    net = ResNet(depth=depth, width=8, norm="bn").eval()
    feats = net(torch.randn(2, 3, 97, 131))
    expansion = 4 if depth == 50 else 1
    # Each stride-2 step rounds up: 97 -> 49 -> 25 -> 13 -> 7 -> 4 and 131 -> 66 -> 33 -> 17 -> 9 -> 5.
    expected = {"res2": (25, 33), "res3": (13, 17), "res4": (7, 9), "res5": (4, 5)}
    assert list(feats) == ["res2", "res3", "res4", "res5"]
    for i, (name, hw) in enumerate(expected.items()):
        assert feats[name].shape == (2, 8 * 2 ** i * expansion, *hw)
        assert net.channels[name] == 8 * 2 ** i * expansion


def test_three_stages_five_channels_for_the_value_encoder():
    net = ResNet(depth=18, width=8, in_channels=5, num_stages=3, norm="bn")
    feats = net(torch.randn(1, 5, 64, 48))
    assert set(feats) == {"res2", "res3", "res4"} and net.channels == {"res2": 8, "res3": 16, "res4": 32}
    assert feats["res4"].shape == (1, 32, 4, 3)
    assert not hasattr(net, "layer4")
    assert net.conv1.weight.shape == (8, 5, 7, 7)


@pytest.mark.parametrize("depth,count", [(50, 23_508_032), (18, 11_176_512)])
def test_parameter_count_matches_torchvision_without_fc(depth, count):
    assert sum(p.numel() for p in ResNet(depth=depth, norm="bn").parameters()) == count


def test_frozen_bn_has_no_parameters_but_the_same_affine_size():
    net = ResNet(depth=18, norm="frozen_bn")
    trainable = sum(p.numel() for p in net.parameters())
    affine = sum(b.numel() for n, b in net.named_buffers() if n.endswith(("weight", "bias")))
    assert trainable + affine == 11_176_512
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())


@pytest.mark.parametrize("depth", [18, 50])
@pytest.mark.parametrize("norm", ["bn", "frozen_bn"])
def test_state_dict_loads_in_torchvision_layout(depth, norm):
    expected = torchvision_resnet_keys(depth)
    net = ResNet(depth=depth, norm=norm)
    ours = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    if norm == "frozen_bn":  # frozen BN keeps no counter; torchvision's checkpoints carry one
        expected_ours = {k: s for k, s in expected.items() if not k.endswith("num_batches_tracked")}
    else:
        expected_ours = expected
    assert ours == expected_ours
    # A checkpoint in torchvision's exact layout (counters included) loads strictly and lands.
    generator = torch.Generator().manual_seed(0)
    checkpoint = {k: (torch.tensor(7) if k.endswith("num_batches_tracked")
                      else torch.rand(s, generator=generator) + 0.5) for k, s in expected.items()}
    net.load_state_dict(checkpoint, strict=True)
    assert torch.equal(net.state_dict()["layer2.0.conv2.weight"], checkpoint["layer2.0.conv2.weight"])
    assert torch.equal(net.state_dict()["layer2.0.downsample.1.running_var"],
                       checkpoint["layer2.0.downsample.1.running_var"])


def test_hard_coded_torchvision_names():
    r50 = ResNet(depth=50, width=8).state_dict()
    assert "layer1.0.downsample.0.weight" in r50
    assert "layer2.0.downsample.1.running_var" in r50
    assert "layer4.2.bn3.running_mean" in r50
    r18 = ResNet(depth=18, width=8).state_dict()
    assert "layer1.0.downsample.0.weight" not in r18   # R18 layer1 keeps 64 channels at stride 1
    assert "layer2.0.downsample.1.running_var" in r18
    assert "layer1.1.conv3.weight" not in r18


def test_stride_sits_in_the_3x3_conv():
    block = ResNet(depth=50, width=8).layer2[0]
    assert block.conv1.stride == (1, 1) and block.conv2.stride == (2, 2) and block.downsample[0].stride == (2, 2)


def test_frozen_bn_equals_batchnorm_in_eval_and_drops_counter():
    bn = nn.BatchNorm2d(6).eval()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2), bn.bias.uniform_(-1, 1)
        bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 3)
    frozen = FrozenBatchNorm2d(6)
    frozen.load_state_dict(bn.state_dict(), strict=True)   # holds num_batches_tracked
    x = torch.randn(2, 6, 5, 7)
    torch.testing.assert_close(frozen(x), bn(x))
    assert list(frozen.parameters()) == []


def test_trainable_bn_starts_each_block_as_identity():
    net = ResNet(depth=50, width=8, norm="bn")
    for layer in (net.layer1, net.layer4):
        for block in layer:
            assert torch.count_nonzero(block.bn3.weight) == 0
            assert torch.count_nonzero(block.bn1.weight) == block.bn1.weight.numel()
    # With zero gamma in the last norm, a block without downsample returns relu(x).
    block = net.layer1[1].eval()
    x = torch.randn(1, 32, 6, 6)
    torch.testing.assert_close(block(x), torch.relu(x))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="depth"):
        ResNet(depth=101)
    with pytest.raises(ValueError, match="norm"):
        ResNet(depth=18, norm="group")
    with pytest.raises(ValueError, match="num_stages"):
        ResNet(depth=18, num_stages=5)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        ResNet(depth=18, width=8)(torch.randn(1, 4, 32, 32))
