"""The instance-segmentation branch (§3.1): position encoding, pixel decoder, masked-attention decoder, IS head."""

import math

import pytest
import torch

from isvos_lite.model.backbone import ResNet
from isvos_lite.model.instance_head import InstanceHead, postprocess_instances
from isvos_lite.model.pixel_decoder import MSDeformAttnPixelDecoder, group_norm
from isvos_lite.model.position_encoding import PositionEmbeddingSine
from isvos_lite.model.transformer_decoder import MaskedTransformerDecoder, attention_mask_from_logits

C = 16  # tiny width used throughout


def tiny_decoder(num_layers=3, num_queries=5, num_classes=3):
    torch.manual_seed(0)
    return MaskedTransformerDecoder(hidden_dim=C, num_queries=num_queries, num_layers=num_layers, num_heads=2,
                                    ffn_dim=32, num_classes=num_classes, mask_dim=C).eval()


# --- position encoding -------------------------------------------------------------------------------

def test_sine_position_known_values():
    pos = PositionEmbeddingSine(num_pos_feats=4)(torch.zeros(1, 8, 2, 3))
    assert pos.shape == (1, 8, 2, 3)
    # Channels 0..3 encode y, 4..7 encode x. y of row i is (i+1)/H·2π; x of column j is (j+1)/W·2π.
    # With F = 4 the wavelengths are (1, 1, 100, 100): channels sin(t), cos(t), sin(t/100), cos(t/100).
    y, x = 1 / 2 * 2 * math.pi, 3 / 3 * 2 * math.pi       # row 0, column 2
    expected = torch.tensor([math.sin(y), math.cos(y), math.sin(y / 100), math.cos(y / 100),
                             math.sin(x), math.cos(x), math.sin(x / 100), math.cos(x / 100)])
    torch.testing.assert_close(pos[0, :, 0, 2], expected, atol=1e-5, rtol=0)


def test_sine_position_cache_keeps_values_sizes_and_modes_apart():
    position = PositionEmbeddingSine(num_pos_feats=4)
    first = position(torch.zeros(1, 8, 2, 3))
    assert position(torch.ones(1, 8, 2, 3)) is first                     # same size: the cached map
    other = position(torch.zeros(1, 8, 4, 5))
    torch.testing.assert_close(other, position._embed(torch.zeros(1, 8, 4, 5), None))
    with torch.inference_mode():
        inference = position(torch.zeros(1, 8, 2, 3))
    assert inference is not first and torch.equal(inference, first)     # never hands an inference tensor to autograd
    mask = torch.zeros(1, 2, 3, dtype=torch.bool)
    mask[:, :, 2] = True                                                 # padding is not cached
    assert not torch.equal(position(torch.zeros(1, 8, 2, 3), mask), first)
    for size in range(3, 14):
        position(torch.zeros(1, 8, size, 2))
    assert len(position._cache) <= 8


def test_sine_position_rejects_odd_features():
    with pytest.raises(ValueError, match="even"):
        PositionEmbeddingSine(num_pos_feats=3)


# --- pixel decoder -----------------------------------------------------------------------------------

def test_group_norm_groups_divide_the_width():
    assert group_norm(256).num_groups == 32
    assert group_norm(24).num_groups == 24
    assert group_norm(40).num_groups == 20


def test_pixel_decoder_shapes_at_odd_size():
    torch.manual_seed(0)
    backbone = ResNet(depth=18, width=8, norm="bn").eval()
    decoder = MSDeformAttnPixelDecoder(backbone.channels, conv_dim=C, mask_dim=12, num_layers=2, num_heads=2,
                                       num_points=2, ffn_dim=32).eval()
    mask_features, pyramid = decoder(backbone(torch.randn(2, 3, 97, 131)))
    assert mask_features.shape == (2, 12, 25, 33)
    assert [tuple(p.shape) for p in pyramid] == [(2, C, 4, 5), (2, C, 7, 9), (2, C, 13, 17)]
    assert all(torch.isfinite(p).all() for p in pyramid)


def test_pixel_decoder_levels_talk_to_each_other():
    """Deformable attention mixes the levels: changing res5 alone changes the s8 output."""
    torch.manual_seed(0)
    channels = {"res2": 8, "res3": 8, "res4": 8, "res5": 8}
    decoder = MSDeformAttnPixelDecoder(channels, conv_dim=C, mask_dim=C, num_layers=1, num_heads=2,
                                       num_points=2, ffn_dim=32).eval()
    feats = {"res2": torch.randn(1, 8, 16, 16), "res3": torch.randn(1, 8, 8, 8),
             "res4": torch.randn(1, 8, 4, 4), "res5": torch.randn(1, 8, 2, 2)}
    _, before = decoder(feats)
    _, after = decoder({**feats, "res5": torch.randn(1, 8, 2, 2)})
    assert not torch.allclose(before[2], after[2])


def test_pixel_decoder_needs_all_stages():
    with pytest.raises(ValueError, match="res2"):
        MSDeformAttnPixelDecoder({"res3": 8, "res4": 8, "res5": 8}, C, C, 1, 2, 2, 32)


# --- IS head -----------------------------------------------------------------------------------------

def test_instance_head_dot_product():
    torch.manual_seed(0)
    head = InstanceHead(hidden_dim=C, num_classes=3, mask_dim=6)
    queries, pixels = torch.randn(2, 4, C), torch.randn(2, 6, 5, 7)
    classes, masks = head(queries, pixels)
    assert classes.shape == (2, 4, 4) and masks.shape == (2, 4, 5, 7)
    embedding = head.mask_embed(queries[1, 2])
    torch.testing.assert_close(masks[1, 2, 3, 4], embedding @ pixels[1, :, 3, 4])
    assert len(head.mask_embed.layers) == 3


def test_postprocess_instances_scores_and_masks():
    # 2 queries, 2 classes (+ no object). Query 0: class 1, mask on the left; query 1: mostly no-object.
    class_logits = torch.tensor([[[0.0, 5.0, 0.0], [0.0, 0.0, 5.0]]])
    mask_logits = torch.full((1, 2, 2, 4), -10.0)
    mask_logits[0, 0, :, :2] = 10.0
    mask_logits[0, 1, 0, 0] = 10.0
    (result,) = postprocess_instances(class_logits, mask_logits, top_k=3)
    assert result["masks"].dtype == torch.bool and result["masks"].shape == (3, 2, 4)
    p_best = math.exp(5) / (math.exp(5) + 2)
    assert result["labels"][0] == 1 and result["query_index"][0] == 0
    torch.testing.assert_close(result["scores"][0], torch.tensor(p_best * torch.sigmoid(torch.tensor(10.0)).item()))
    assert result["masks"][0, :, :2].all() and not result["masks"][0, :, 2:].any()
    assert torch.all(result["scores"][:-1] >= result["scores"][1:])
    (resized,) = postprocess_instances(class_logits, mask_logits, top_k=10, output_size=(4, 8))
    assert resized["masks"].shape == (4, 4, 8)    # top_k capped at N*K = 4


# --- masked transformer decoder ----------------------------------------------------------------------

def test_decoder_outputs_and_level_cycle_at_odd_size():
    decoder = tiny_decoder(num_layers=4)
    pyramid = [torch.randn(2, C, 4, 5), torch.randn(2, C, 7, 9), torch.randn(2, C, 13, 17)]
    out = decoder(pyramid, torch.randn(2, C, 25, 33))
    assert out["queries"].shape == (2, 5, C) and out["query_pos"].shape == (2, 5, C)
    assert out["pred_logits"].shape == (2, 5, 4) and out["pred_masks"].shape == (2, 5, 25, 33)
    assert len(out["aux_outputs"]) == 4                                 # + the final one = num_layers + 1
    assert all(a["pred_masks"].shape == (2, 5, 25, 33) for a in out["aux_outputs"])
    # layer i reads level i % 3: s32, s16, s8, s32
    assert [m.shape[-1] for m in out["attn_masks"]] == [20, 63, 221, 20]
    assert all(m.dtype == torch.bool for m in out["attn_masks"])
    # The final prediction is the IS head applied to the returned queries.
    classes, masks = decoder.instance_head(out["queries"], torch.zeros(2, C, 25, 33))
    torch.testing.assert_close(classes, out["pred_logits"])


def test_attention_mask_threshold_and_all_masked_rows():
    logits = torch.tensor([[[[1.0, -1.0], [-2.0, 3.0]], [[-1.0, -1.0], [-1.0, -1.0]]]])   # (1, 2, 2, 2)
    blocked = attention_mask_from_logits(logits, (2, 2))
    assert blocked.tolist() == [[[False, True, True, False], [False, False, False, False]]]


def _controlled_masks(decoder, sign_map):
    """Make every query's mask embedding the same vector v and F_pixel = v·sign_map: the mask logits are
    |v|²·sign_map, so each pixel is blocked for all queries (sign -1) or open for all (sign +1)."""
    v = torch.linspace(0.5, 1.5, C)
    last = decoder.instance_head.mask_embed.layers[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(v)
    return v.view(1, C, 1, 1) * sign_map


def test_masked_positions_do_not_change_the_queries():
    decoder = tiny_decoder(num_layers=1)                       # one layer: reads s32 only
    sign = torch.ones(1, 1, 8, 8)
    sign[..., 4:] = -1.0                                       # right half of F_pixel -> blocked
    mask_features = _controlled_masks(decoder, sign)
    pyramid = [torch.randn(1, C, 2, 2), torch.randn(1, C, 4, 4), torch.randn(1, C, 8, 8)]
    out = decoder(pyramid, mask_features)
    assert out["attn_masks"][0].view(1, 5, 2, 2)[..., 1].all()       # right column of s32 blocked
    assert not out["attn_masks"][0].view(1, 5, 2, 2)[..., 0].any()
    changed_blocked = [pyramid[0].clone(), *pyramid[1:]]
    changed_blocked[0][..., 1] = 100 * torch.randn(1, C, 2)
    torch.testing.assert_close(decoder(changed_blocked, mask_features)["queries"], out["queries"])
    changed_open = [pyramid[0].clone(), *pyramid[1:]]
    changed_open[0][..., 0] = 100 * torch.randn(1, C, 2)
    assert not torch.allclose(decoder(changed_open, mask_features)["queries"], out["queries"])


def test_all_masked_row_attends_everywhere():
    decoder = tiny_decoder(num_layers=1)
    pyramid = [torch.randn(1, C, 2, 2), torch.randn(1, C, 4, 4), torch.randn(1, C, 8, 8)]
    everything_blocked = decoder(pyramid, _controlled_masks(decoder, -torch.ones(1, 1, 8, 8)))
    nothing_blocked = decoder(pyramid, _controlled_masks(decoder, torch.ones(1, 1, 8, 8)))
    assert not everything_blocked["attn_masks"][0].any()
    torch.testing.assert_close(everything_blocked["queries"], nothing_blocked["queries"])
    assert torch.isfinite(everything_blocked["queries"]).all()


def test_decoder_gradients_reach_queries_and_levels():
    decoder = tiny_decoder(num_layers=3).train()
    pyramid = [torch.randn(1, C, 2, 3, requires_grad=True), torch.randn(1, C, 4, 5, requires_grad=True),
               torch.randn(1, C, 7, 9, requires_grad=True)]
    out = decoder(pyramid, torch.randn(1, C, 13, 17))
    (out["pred_masks"].sum() + out["pred_logits"].sum()).backward()
    assert decoder.query_feat.weight.grad.abs().sum() > 0 and decoder.query_embed.weight.grad.abs().sum() > 0
    assert all(p.grad.abs().sum() > 0 for p in pyramid)


def test_decoder_rejects_wrong_pyramid():
    decoder = tiny_decoder()
    with pytest.raises(ValueError, match="3 pyramid levels"):
        decoder([torch.randn(1, C, 2, 2)], torch.randn(1, C, 8, 8))
    with pytest.raises(ValueError, match="level 1"):
        decoder([torch.randn(1, C, 2, 2), torch.randn(1, C + 1, 4, 4), torch.randn(1, C, 8, 8)],
                torch.randn(1, C, 8, 8))


def test_paper_sizes_match_mask2former_r50():
    """ResNet-50 23.5 M + pixel decoder 6.0 M + transformer decoder 14.5 M (Mask2Former's R50 model). Construction only."""
    count = lambda m: sum(p.numel() for p in m.parameters())
    backbone = ResNet(depth=50, norm="bn")
    pixel = MSDeformAttnPixelDecoder(backbone.channels, 256, 256, 6, 8, 4, 1024)
    decoder = MaskedTransformerDecoder(256, 100, 9, 8, 2048, 80, 256)
    assert count(backbone) == 23_508_032
    assert count(pixel) == 6_035_904
    assert count(decoder) == 14_479_441


def test_mask_iou_targets_are_each_querys_best_iou():
    from isvos_lite.train.criterion import mask_iou_targets

    logits = torch.full((1, 3, 8, 8), -5.0)
    logits[0, 0, :4, :4] = 5.0                       # exactly instance A
    logits[0, 1, :4, :8] = 5.0                       # A and as much again: IoU 16/32 with A, 0 with B
    logits[0, 2, 6:, 6:] = 5.0                       # a stray over nothing
    gt = torch.zeros(2, 16, 16)                      # at twice the mask resolution (area-resized)
    gt[0, :8, :8] = 1.0                              # A
    gt[1, 8:12, :4] = 1.0                            # B, 4 mask pixels at the low resolution
    targets = mask_iou_targets(logits, [{"labels": torch.tensor([0, 1]), "masks": gt}])
    assert targets.shape == (1, 3)
    assert targets[0].tolist() == pytest.approx([1.0, 0.5, 0.0])
    empty = mask_iou_targets(logits, [{"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 16, 16)}])
    assert empty.abs().sum() == 0


def test_mask_iou_head_output_loss_and_loading_from_a_branch_without_it(tmp_path):
    from isvos_lite.checkpoint import load_instance_branch, save_checkpoint
    from isvos_lite.config import get_preset
    from isvos_lite.model.isvos import ISVOS
    from isvos_lite.train.criterion import SetCriterion

    torch.manual_seed(0)
    plain = ISVOS(get_preset("tiny")).eval()
    assert "pred_iou_logits" not in plain.forward_instance(torch.rand(1, 3, 64, 64))
    with_head = ISVOS(get_preset("tiny", mask_iou_head=True))
    out = with_head.forward_instance(torch.rand(2, 3, 64, 64))
    assert out["pred_iou_logits"].shape == out["pred_logits"].shape[:2]
    masks = torch.zeros(1, 64, 64)
    masks[0, 10:30, 10:30] = 1
    targets = [{"labels": torch.tensor([1]), "masks": masks}] * 2
    losses = SetCriterion(with_head.cfg.num_classes, num_points=64)(out, targets)
    assert losses["loss_mask_iou"] > 0
    losses["loss_is"].backward()
    head = with_head.transformer_decoder.instance_head.iou_embed
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
    # an instance stage without the head initialises a model with one: the head keeps its own weights
    before = [p.detach().clone() for p in head.parameters()]
    ckpt = save_checkpoint(plain, tmp_path / "plain.safetensors")
    load_instance_branch(ckpt, with_head)
    assert all(torch.equal(a, b) for a, b in zip(before, head.parameters()))
    assert torch.equal(with_head.transformer_decoder.query_feat.weight, plain.transformer_decoder.query_feat.weight)
