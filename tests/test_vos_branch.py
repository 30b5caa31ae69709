"""The VOS-branch modules: blocks, value encoder (§3.2), Enhanced Key Encoder (Eq. (2)), MPF decoder (Eq. (4)).

Tiny widths and odd feature sizes (7 x 9 at stride 16) throughout.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from isvos_lite.model.blocks import CBAM, ChannelGate, ResBlock, SpatialGate, resize_to
from isvos_lite.model.deform_attn import MSDeformAttn
from isvos_lite.model.key_encoder import EnhancedKeyEncoder, mask_centroids
from isvos_lite.model.mpf_decoder import MPFDecoder
from isvos_lite.model.value_encoder import ValueEncoder

H16, W16 = 7, 9            # stride-16 size of a 112 x 144 frame
IMAGE = (112, 144)


def assert_every_parameter_gets_gradient(module: nn.Module) -> None:
    for name, param in module.named_parameters():
        assert param.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{name} has a non-finite gradient"
        assert param.grad.abs().sum() > 0, f"{name} got an all-zero gradient"


# ---------------------------------------------------------------------------------------- blocks


def test_resblock_identity_and_projection_shortcuts():
    same = ResBlock(6, 6)
    assert same.shortcut is None
    with torch.no_grad():
        same.conv2.weight.zero_()
        same.conv2.bias.zero_()
    x = torch.randn(2, 6, 5, 7)
    torch.testing.assert_close(same(x), x)               # zero residual -> exactly the input
    wider = ResBlock(6, 10)
    assert isinstance(wider.shortcut, nn.Conv2d)
    assert wider(x).shape == (2, 10, 5, 7)
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)) for m in wider.modules())


def test_cbam_gates_scale_features_and_work_for_small_widths():
    gate = ChannelGate(4, reduction=16)                  # 4 // 16 = 0 -> at least one hidden unit
    assert gate.mlp[0].out_features == 1
    x = torch.randn(2, 4, 5, 6)
    ratio = gate(x) / x                                  # one factor in (0, 1) per (batch, channel)
    assert ((ratio > 0) & (ratio < 1)).all()
    torch.testing.assert_close(ratio, ratio[..., :1, :1].expand_as(ratio))
    spatial_ratio = SpatialGate()(x) / x                 # one factor per (batch, pixel), shared by channels
    torch.testing.assert_close(spatial_ratio, spatial_ratio[:, :1].expand_as(spatial_ratio))
    assert CBAM(4)(x).shape == x.shape


def test_resize_to_is_identity_for_same_size():
    x = torch.randn(1, 2, 4, 5)
    assert resize_to(x, torch.zeros(3, 4, 5)) is x
    assert resize_to(x, torch.zeros(1, 1, 7, 9)).shape == (1, 2, 7, 9)


# ---------------------------------------------------------------------------------------- value encoder


def make_value_encoder() -> ValueEncoder:
    return ValueEncoder(value_dim=12, res4_channels=10, depth=18, width=4, norm="bn")


def test_value_encoder_input_has_own_mask_and_sum_of_other_masks():
    torch.manual_seed(0)
    encoder = make_value_encoder().eval()
    image = torch.randn(2, 3, *IMAGE)
    masks = torch.rand(2, 3, *IMAGE)
    seen = {}

    def record_input(module, inputs, output):
        seen["x"] = inputs[0]                            # returns None: the output is left as it is

    encoder.mask_backbone.conv1.register_forward_hook(record_input)
    value = encoder(image, masks, torch.randn(2, 10, H16, W16))
    assert value.shape == (2, 3, 12, H16, W16)

    x = seen["x"].view(2, 3, 5, *IMAGE)                  # objects folded into the batch, object-major per frame
    for b in range(2):
        for o in range(3):
            torch.testing.assert_close(x[b, o, :3], image[b])
            torch.testing.assert_close(x[b, o, 3], masks[b, o])
            others = sum(masks[b, j] for j in range(3) if j != o)
            torch.testing.assert_close(x[b, o, 4], others)


def test_value_encoder_single_object_has_empty_others_and_objects_are_independent():
    torch.manual_seed(1)
    encoder = make_value_encoder().eval()
    image, res4 = torch.randn(1, 3, *IMAGE), torch.randn(1, 10, H16, W16)
    masks = torch.rand(1, 2, *IMAGE)
    both = encoder(image, masks, res4)
    # object 0's value depends on object 1's mask only through the "others" channel
    alone = encoder(image, masks[:, :1], res4)
    assert not torch.allclose(both[:, 0], alone[:, 0])
    swapped = encoder(image, masks.flip(1), res4)
    torch.testing.assert_close(swapped.flip(1), both)


def test_value_encoder_gradients_and_errors():
    torch.manual_seed(2)
    encoder = make_value_encoder()
    for module in encoder.modules():                     # undo zero-gamma init so every conv gets gradient
        if isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
    image, masks, res4 = torch.randn(2, 3, *IMAGE), torch.rand(2, 2, *IMAGE), torch.randn(2, 10, H16, W16)
    out = encoder(image, masks, res4)
    (out * torch.randn_like(out)).sum().backward()
    assert_every_parameter_gets_gradient(encoder)

    with pytest.raises(ValueError, match="masks"):
        encoder(image, torch.rand(2, 2, 50, 50), res4)
    with pytest.raises(ValueError, match="res4"):
        encoder(image, masks, torch.randn(2, 7, H16, W16))
    with pytest.raises(ValueError, match="res4"):
        encoder(image, masks, torch.randn(2, 10, H16 + 1, W16))


# ---------------------------------------------------------------------------------------- key encoder

N, C_H, C4 = 5, 16, 12


def make_key_encoder(query_enhancement: bool) -> EnhancedKeyEncoder:
    return EnhancedKeyEncoder(in_channels=C4, hidden_dim=C_H, key_dim=8, num_queries=N, num_heads=2, num_points=3,
                              ffn_dim=24, query_enhancement=query_enhancement)


def key_inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    res4 = torch.randn(2, C4, H16, W16, generator=g)
    queries = torch.randn(2, N, C_H, generator=g)
    query_pos = torch.randn(2, N, C_H, generator=g)
    mask_logits = torch.randn(2, N, 4 * H16, 4 * W16, generator=g) * 4
    return res4, queries, query_pos, mask_logits


def test_mask_centroids_of_synthetic_masks():
    logits = torch.full((1, 3, 12, 16), -10.0)
    logits[0, 0, 2:6, 3:9] = 10.0                        # rows 2..5, columns 3..8
    logits[0, 2, 0, 0] = torch.logit(torch.tensor(0.9))  # two pixels with different confidence
    logits[0, 2, 11, 15] = torch.logit(torch.tensor(0.6))
    p = mask_centroids(logits)
    assert p.shape == (1, 3, 2)
    torch.testing.assert_close(p[0, 0], torch.tensor([(3 + 9) / 2 / 16, (2 + 6) / 2 / 12]))
    torch.testing.assert_close(p[0, 1], torch.tensor([0.5, 0.5]))             # empty mask -> image centre
    expected = (0.9 * torch.tensor([0.5 / 16, 0.5 / 12]) + 0.6 * torch.tensor([15.5 / 16, 11.5 / 12])) / 1.5
    torch.testing.assert_close(p[0, 2], expected)
    assert not mask_centroids(logits.requires_grad_()).requires_grad         # p is detached


def test_key_encoder_reference_points_are_mask_centroids():
    encoder = make_key_encoder(True)
    res4, queries, query_pos, _ = key_inputs()
    logits = torch.full((2, N, 4 * H16, 4 * W16), -8.0)
    logits[:, 0, 4:10, 20:30] = 8.0
    out = encoder(res4, queries, query_pos, logits)
    torch.testing.assert_close(out["reference_points"][:, 0], torch.tensor([[25 / 36, 7 / 28]] * 2))
    torch.testing.assert_close(out["reference_points"][:, 1:], torch.full((2, N - 1, 2), 0.5))


def test_key_encoder_switch_changes_parameters():
    with_qe, without_qe = make_key_encoder(True), make_key_encoder(False)
    assert any(isinstance(m, MSDeformAttn) for m in with_qe.modules())
    assert not any(isinstance(m, (MSDeformAttn, nn.LayerNorm, nn.Linear)) for m in without_qe.modules())
    assert not hasattr(without_qe, "deform_attn") and not hasattr(without_qe, "ffn")
    assert with_qe.key_proj.in_channels == C_H + N and without_qe.key_proj.in_channels == C_H
    assert sum(p.numel() for p in with_qe.parameters()) > sum(p.numel() for p in without_qe.parameters())
    # orthogonal key projection, zero bias (STCN's KeyProjection)
    w = without_qe.key_proj.weight.flatten(1)            # (C_k, C_h * 9), rows orthonormal
    torch.testing.assert_close(w @ w.T, torch.eye(8), atol=1e-5, rtol=0)
    assert (without_qe.key_proj.bias == 0).all()


def test_key_encoder_outputs_depend_on_queries_only_with_enhancement():
    res4, queries, query_pos, mask_logits = key_inputs()
    other_queries = torch.randn_like(queries)

    on = make_key_encoder(True)
    out = on(res4, queries, query_pos, mask_logits)
    assert out["key"].shape == (2, 8, H16, W16) and out["Q_g"].shape == (2, C_H, H16, W16)
    assert out["q_vos"].shape == (2, N, C_H) and out["instance_maps"].shape == (2, N, H16, W16)
    assert ((out["instance_maps"] > 0) & (out["instance_maps"] < 1)).all()
    assert not torch.allclose(on(res4, other_queries, query_pos, mask_logits)["key"], out["key"])
    assert not torch.allclose(on(res4, queries, query_pos, -mask_logits)["key"], out["key"])   # via p

    off = make_key_encoder(False)
    base = off(res4, queries, query_pos, mask_logits)
    assert base["q_vos"] is None and base["instance_maps"] is None and base["reference_points"] is None
    torch.testing.assert_close(off(res4, other_queries, None, None)["key"], base["key"])
    torch.testing.assert_close(base["key"], off.key_proj(off.global_proj(res4)))


def test_key_encoder_errors():
    res4, queries, query_pos, mask_logits = key_inputs()
    on = make_key_encoder(True)
    with pytest.raises(ValueError, match="query_enhancement=False"):
        on(res4, None, None, None)
    with pytest.raises(ValueError, match="queries"):
        on(res4, queries[:, :3], query_pos, mask_logits)
    with pytest.raises(ValueError, match="res4"):
        on(res4[:, :5], queries, query_pos, mask_logits)


@pytest.mark.parametrize("query_enhancement", [True, False])
def test_key_encoder_gradients_reach_every_parameter(query_enhancement):
    torch.manual_seed(3)
    encoder = make_key_encoder(query_enhancement)
    res4, queries, query_pos, mask_logits = key_inputs()
    queries.requires_grad_()
    out = encoder(res4, queries, query_pos, mask_logits)
    (out["key"] * torch.randn_like(out["key"])).sum().backward()
    assert_every_parameter_gets_gradient(encoder)
    assert (queries.grad is not None and queries.grad.abs().sum() > 0) == query_enhancement


# ---------------------------------------------------------------------------------------- MPF decoder

C_V, SKIPS, C_D, DIMS = 10, (12, 8, 6), 7, (9, 6, 5)


def mpf_inputs(seed: int = 0, objects: int = 3):
    g = torch.Generator().manual_seed(seed)
    readout = torch.randn(2, objects, C_V, H16, W16, generator=g)
    skips = (torch.randn(2, SKIPS[0], H16, W16, generator=g),
             torch.randn(2, SKIPS[1], 14, 18, generator=g),
             torch.randn(2, SKIPS[2], 28, 36, generator=g))
    pixel = [torch.randn(2, C_D, 4, 5, generator=g),       # s32 of a 7 x 9 s16 map (rounded up)
             torch.randn(2, C_D, H16, W16, generator=g),
             torch.randn(2, C_D, 14, 18, generator=g)]
    return readout, skips, pixel


def test_mpf_switch_removes_pixel_convs():
    with_mpf = MPFDecoder(C_V, SKIPS, C_D, DIMS, multi_path_fusion=True)
    without_mpf = MPFDecoder(C_V, SKIPS, C_D, DIMS, multi_path_fusion=False)
    assert all(hasattr(block, "pixel_conv") for block in with_mpf.blocks)
    assert not any(hasattr(block, "pixel_conv") for block in without_mpf.blocks)
    assert not any("pixel" in name for name, _ in without_mpf.named_parameters())
    assert [b.fuse.in_dim for b in with_mpf.blocks] == [2 * C_V, 2 * DIMS[0], 2 * DIMS[1]]
    assert [b.fuse.in_dim for b in without_mpf.blocks] == [C_V, DIMS[0], DIMS[1]]


@pytest.mark.parametrize("multi_path_fusion", [True, False])
def test_mpf_output_at_stride_4_for_odd_sizes(multi_path_fusion):
    decoder = MPFDecoder(C_V, SKIPS, C_D, DIMS, multi_path_fusion=multi_path_fusion)
    readout, skips, pixel = mpf_inputs()
    # an odd frame (e.g. 100 x 130) gives s16 7x9, s8 13x17, s4 25x33: every size comes from B_i
    skips = (skips[0], skips[1][..., :13, :17], skips[2][..., :25, :33])
    logits, stages = decoder(readout, skips, pixel, return_features=True)
    assert logits.shape == (2, 3, 25, 33)
    assert [s.shape for s in stages] == [(2, 3, 9, 7, 9), (2, 3, 6, 13, 17), (2, 3, 5, 25, 33)]
    torch.testing.assert_close(decoder(readout, skips, pixel), logits)


def test_mpf_output_depends_on_pixel_features_only_with_mpf():
    readout, skips, pixel = mpf_inputs()
    other_pixel = [torch.randn_like(p) for p in pixel]
    for level in range(3):                               # every P_i is used when MPF is on
        changed = list(pixel)
        changed[level] = other_pixel[level]
        with_mpf = MPFDecoder(C_V, SKIPS, C_D, DIMS, multi_path_fusion=True)
        assert not torch.allclose(with_mpf(readout, skips, pixel), with_mpf(readout, skips, changed))
    without_mpf = MPFDecoder(C_V, SKIPS, C_D, DIMS, multi_path_fusion=False)
    reference = without_mpf(readout, skips, None)
    torch.testing.assert_close(without_mpf(readout, skips, other_pixel), reference)


def test_mpf_objects_are_decoded_independently():
    decoder = MPFDecoder(C_V, SKIPS, C_D, DIMS)
    readout, skips, pixel = mpf_inputs()
    all_objects = decoder(readout, skips, pixel)
    for o in range(3):
        torch.testing.assert_close(decoder(readout[:, o:o + 1], skips, pixel)[:, 0], all_objects[:, o])


def test_mpf_errors():
    readout, skips, pixel = mpf_inputs()
    decoder = MPFDecoder(C_V, SKIPS, C_D, DIMS)
    with pytest.raises(ValueError, match="multi_path_fusion=False"):
        decoder(readout, skips, None)
    with pytest.raises(ValueError, match="res3"):
        decoder(readout, (skips[0], skips[2], skips[2]), pixel)
    with pytest.raises(ValueError, match="same spatial size"):
        decoder(readout[..., :5, :5], skips, pixel)
    with pytest.raises(ValueError, match="skip_channels"):
        MPFDecoder(C_V, SKIPS[:2], C_D, DIMS)


@pytest.mark.parametrize("multi_path_fusion", [True, False])
def test_mpf_gradients_reach_every_parameter(multi_path_fusion):
    torch.manual_seed(4)
    decoder = MPFDecoder(C_V, SKIPS, C_D, DIMS, multi_path_fusion=multi_path_fusion)
    readout, skips, pixel = mpf_inputs()
    readout.requires_grad_()
    logits = decoder(readout, skips, pixel)
    (logits * torch.randn_like(logits)).sum().backward()
    assert_every_parameter_gets_gradient(decoder)
    assert readout.grad.abs().sum() > 0


# --- the live EKE: bounded cosine injection, flattening switch, alignment loss, QE health ---------------

def test_cosine_injection_is_bounded_and_the_literal_form_is_not():
    torch.manual_seed(0)
    res4, queries, query_pos, mask_logits = key_inputs()
    cosine = make_key_encoder(True)
    assert cosine.injection == "cosine" and cosine.temperature == pytest.approx(cosine.tau_max / 2)
    out = cosine(res4 * 100, queries * 100, query_pos, mask_logits)           # huge features: still bounded
    assert out["map_logits"].abs().max() <= cosine.tau_max + 1e-5
    torch.testing.assert_close(out["instance_maps"], torch.sigmoid(out["map_logits"]))
    literal = EnhancedKeyEncoder(C4, C_H, 8, N, num_heads=2, num_points=2, ffn_dim=32, injection="literal")
    big = literal(res4 * 100, queries, query_pos, mask_logits)
    assert big["map_logits"].abs().max() > 20                                 # the literal dot product saturates
    with pytest.raises(ValueError, match="injection"):
        EnhancedKeyEncoder(C4, C_H, 8, N, num_heads=2, num_points=2, ffn_dim=32, injection="dot")


def test_flattened_maps_change_the_key_but_not_the_maps():
    torch.manual_seed(1)
    res4, queries, query_pos, mask_logits = key_inputs()
    encoder = make_key_encoder(True)
    encoder.key_proj.weight.data.normal_()                                   # make the map channels matter
    normal = encoder(res4, queries, query_pos, mask_logits)
    encoder.flatten_maps = True
    flat = encoder(res4, queries, query_pos, mask_logits)
    torch.testing.assert_close(flat["instance_maps"], normal["instance_maps"])
    assert not torch.allclose(flat["key"], normal["key"])
    # flattened: the same key as injecting each map's spatial mean by hand
    means = normal["instance_maps"].mean(dim=(2, 3), keepdim=True).expand_as(normal["instance_maps"])
    torch.testing.assert_close(flat["key"], encoder.key_proj(torch.cat([normal["Q_g"], means], 1)))


def test_identity_injection_is_order_invariant_and_weights_query_content_by_the_maps():
    torch.manual_seed(2)
    res4, queries, query_pos, mask_logits = key_inputs()
    encoder = EnhancedKeyEncoder(C4, C_H, 8, N, num_heads=2, num_points=2, ffn_dim=32, injection="identity")
    out = encoder(res4, queries, query_pos, mask_logits)
    assert out["map_logits"].abs().max() <= encoder.tau_max + 1e-5           # the same bounded cosine maps
    # I(x) = sum_n maps_n(x) W q_n / sum_n maps_n(x), by hand
    maps, content = out["instance_maps"], encoder.identity_proj(out["q_vos"])  # (B, N, h, w), (B, N, N)
    by_hand = (maps[:, :, None] * content[..., None, None]).sum(1) / maps.sum(1, keepdim=True)
    torch.testing.assert_close(encoder.identity_features(maps, out["q_vos"]), by_hand)
    torch.testing.assert_close(out["key"], encoder.key_proj(torch.cat([out["Q_g"], by_hand], 1)))
    # permuting the query slots (queries, positions, masks together) leaves the key unchanged
    perm = torch.arange(N).flip(0)                                           # reversed slots
    permuted = encoder(res4, queries[:, perm], query_pos[:, perm], mask_logits[:, perm])
    torch.testing.assert_close(permuted["key"], out["key"], atol=1e-5, rtol=1e-5)
    # the cosine injection is not order-invariant: its channels follow the query order
    cosine = make_key_encoder(True)
    cosine.key_proj.weight.data.normal_()                                    # make the map channels matter
    a = cosine(res4, queries, query_pos, mask_logits)["key"]
    b = cosine(res4, queries[:, perm], query_pos[:, perm], mask_logits[:, perm])["key"]
    assert not torch.allclose(a, b, atol=1e-4)
    # flattened maps give every pixel the same identity features
    encoder.flatten_maps = True
    flat = encoder(res4, queries, query_pos, mask_logits)
    flat_identity = encoder.identity_features(maps.mean(dim=(2, 3), keepdim=True).expand_as(maps), out["q_vos"])
    assert flat_identity.flatten(2).std(-1).max() < 1e-6
    torch.testing.assert_close(flat["key"], encoder.key_proj(torch.cat([flat["Q_g"], flat_identity], 1)))
    assert not torch.allclose(flat["key"], out["key"])


def test_injection_temperature_starts_where_asked():
    default = make_key_encoder(True)
    assert default.temperature == pytest.approx(default.tau_max / 2)
    sharp = EnhancedKeyEncoder(C4, C_H, 8, N, num_heads=2, num_points=2, ffn_dim=32, injection="identity",
                               tau_max=12.0, tau_init=10.0)
    assert sharp.temperature == pytest.approx(10.0, rel=1e-5)
    res4, queries, query_pos, mask_logits = key_inputs()
    assert sharp(res4, queries, query_pos, mask_logits)["map_logits"].abs().max() <= 10.0 + 1e-4
    for bad in (0.0, 12.0, 15.0):
        with pytest.raises(ValueError, match="tau_init"):
            EnhancedKeyEncoder(C4, C_H, 8, N, num_heads=2, num_points=2, ffn_dim=32, tau_max=12.0, tau_init=bad)
    from isvos_lite.config import get_preset
    with pytest.raises(ValueError, match="qe_tau_init"):
        get_preset("tiny", qe_tau_init=5.0)                                   # above the default bound of 4


def test_balance_gives_the_injected_channels_the_spatial_spread_of_q_g():
    from isvos_lite.model.key_encoder import balance_to
    torch.manual_seed(3)
    x = 0.5 + 0.01 * torch.randn(2, 5, 6, 7)                                   # quiet maps around 0.5
    ref = 3.0 * torch.randn(2, 16, 6, 7)
    out = balance_to(x, ref)

    def dev(t):
        return (t - t.mean(dim=(2, 3), keepdim=True)).pow(2).mean(dim=(1, 2, 3)).sqrt()
    torch.testing.assert_close(dev(out), dev(ref))                            # the same spread, per frame
    torch.testing.assert_close(out.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=1e-4, rtol=0)   # same spatial means
    constant = torch.full((2, 5, 6, 7), 0.3)
    torch.testing.assert_close(balance_to(constant, ref), constant)          # flat maps stay flat
    res4, queries, query_pos, mask_logits = key_inputs()
    plain = EnhancedKeyEncoder(C4, C_H, 8, N, num_heads=2, num_points=2, ffn_dim=32, injection="identity")
    balanced = EnhancedKeyEncoder(C4, C_H, 8, N, num_heads=2, num_points=2, ffn_dim=32, injection="identity",
                                  balance=True)
    balanced.load_state_dict(plain.state_dict())
    a, b = plain(res4, queries, query_pos, mask_logits), balanced(res4, queries, query_pos, mask_logits)
    assert not torch.allclose(a["key"], b["key"])
    plain.flatten_maps = balanced.flatten_maps = True                         # flattened: balancing changes nothing
    torch.testing.assert_close(plain(res4, queries, query_pos, mask_logits)["key"],
                               balanced(res4, queries, query_pos, mask_logits)["key"])


def test_alignment_loss_pulls_each_map_to_its_own_mask():
    from isvos_lite.model.key_encoder import qe_alignment_loss
    masks = torch.full((1, 2, 16, 16), -10.0)
    masks[0, 0, :8] = 10.0                                                   # query 0: top half; query 1: bottom
    masks[0, 1, 8:] = 10.0
    classes = torch.tensor([[[5.0, -5.0], [5.0, -5.0]]])                    # both predict an object
    pooled = torch.nn.functional.adaptive_avg_pool2d(torch.sigmoid(masks), (4, 4))
    right = (pooled * 2 - 1) * 6                                            # logits that follow each own mask
    wrong = right.flip(1)                                                    # each map follows the other mask
    assert qe_alignment_loss(right, masks, classes) < qe_alignment_loss(wrong, masks, classes)
    # a query that predicts "no object" does not count
    classes_off = torch.tensor([[[5.0, -5.0], [-5.0, 5.0]]])
    mixed = torch.stack([right[0, 0], wrong[0, 1]])[None]
    assert qe_alignment_loss(mixed, masks, classes_off) < qe_alignment_loss(mixed, masks, classes)


def test_qe_health_statistics_tell_shared_maps_from_instance_maps():
    from isvos_lite.config import get_preset
    from isvos_lite.eval.qe_health import flattened_maps, map_statistics
    from isvos_lite.model.isvos import ISVOS
    torch.manual_seed(0)
    model = ISVOS(get_preset("tiny"))
    frames = torch.rand(2, 3, 64, 96)
    stats = map_statistics(model, frames)
    assert 0 <= stats["qe_saturated"] <= 1 and 0 <= stats["qe_map_correlation"] <= 1
    assert stats["qe_frames"] == 2
    # the key's dependence on the maps: > 0, and 0 once the key projection ignores the map channels
    assert stats["qe_key_change"] > 0
    model.key_encoder.key_proj.weight.data[:, model.cfg.hidden_dim:] = 0
    assert map_statistics(model, frames)["qe_key_change"] == pytest.approx(0, abs=1e-7)
    assert not model.key_encoder.flatten_maps
    # a literal encoder with a huge Q_g saturates and its maps become near-copies of each other
    literal = ISVOS(get_preset("tiny", qe_injection="literal"))
    literal.key_encoder.global_proj.weight.data *= 200
    sick = map_statistics(literal, frames)
    assert sick["qe_saturated"] > stats["qe_saturated"] and sick["qe_saturated"] > 0.5
    with flattened_maps(model):
        assert model.key_encoder.flatten_maps
    assert not model.key_encoder.flatten_maps
    with pytest.raises(ValueError, match="query enhancement"):
        map_statistics(ISVOS(get_preset("tiny", query_enhancement=False)), frames)


def test_old_configs_without_the_injection_field_mean_the_literal_form():
    from isvos_lite.config import config_from_dict, get_preset
    d = get_preset("lite").to_dict()
    del d["qe_injection"]
    assert config_from_dict(d).qe_injection == "literal"
    assert get_preset("lite").qe_injection == "cosine"
