"""Multi-scale deformable attention (Eq. (2)): the grid_sample core against a loop, initialisation, checks."""

import math

import pytest
import torch

from isvos_lite.model.deform_attn import MSDeformAttn, ms_deform_attn_core


def bilinear_zero_padded(image: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """Value of image (D, H, W) at normalised (x, y) in [0, 1] with pixel centres at (j + 0.5) / W,
    zeros outside: the definition of grid_sample(align_corners=False, padding zeros), written out."""
    D, H, W = image.shape
    px, py = x * W - 0.5, y * H - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    out = torch.zeros(D, dtype=image.dtype)
    for yy, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
        for xx, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
            if 0 <= yy < H and 0 <= xx < W:
                out += wy * wx * image[:, yy, xx]
    return out


def loop_reference(value, shapes, locations, weights):
    B, S, M, D = value.shape
    _, Lq, _, L, P, _ = locations.shape
    out = torch.zeros(B, Lq, M * D, dtype=value.dtype)
    starts = [0]
    for h, w in shapes[:-1]:
        starts.append(starts[-1] + h * w)
    for b in range(B):
        for q in range(Lq):
            for m in range(M):
                acc = torch.zeros(D, dtype=value.dtype)
                for l, (h, w) in enumerate(shapes):
                    image = value[b, starts[l]:starts[l] + h * w, m].T.reshape(D, h, w)
                    for p in range(P):
                        x, y = locations[b, q, m, l, p].tolist()
                        acc += weights[b, q, m, l, p] * bilinear_zero_padded(image, x, y)
                out[b, q, m * D:(m + 1) * D] = acc
    return out


def test_core_equals_loop_bilinear_reference():
    torch.manual_seed(0)
    shapes = [(3, 5), (2, 3)]
    B, Lq, M, D, L, P = 2, 4, 2, 3, len(shapes), 3
    value = torch.randn(B, sum(h * w for h, w in shapes), M, D, dtype=torch.float64)
    locations = torch.rand(B, Lq, M, L, P, 2, dtype=torch.float64) * 1.4 - 0.2   # some fall outside
    weights = torch.rand(B, Lq, M, L, P, dtype=torch.float64)
    got = ms_deform_attn_core(value, torch.tensor(shapes), locations, weights)
    assert got.shape == (B, Lq, M * D)
    torch.testing.assert_close(got, loop_reference(value, shapes, locations, weights))


def test_pixel_centres_return_pixel_values():
    torch.manual_seed(1)
    H, W, D = 4, 6, 5
    value = torch.randn(1, H * W, 1, D)
    ys, xs = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    centres = torch.stack([(xs + 0.5) / W, (ys + 0.5) / H], dim=-1).reshape(1, H * W, 1, 1, 1, 2)
    out = ms_deform_attn_core(value, torch.tensor([[H, W]]), centres, torch.ones(1, H * W, 1, 1, 1))
    torch.testing.assert_close(out, value[:, :, 0])


def test_module_with_zero_offsets_and_identity_projections_reads_the_pixel():
    torch.manual_seed(2)
    H, W, C = 5, 3, 8
    attn = MSDeformAttn(d_model=C, n_levels=1, n_heads=2, n_points=3)
    with torch.no_grad():
        attn.sampling_offsets.bias.zero_()
        for proj in (attn.value_proj, attn.output_proj):
            proj.weight.copy_(torch.eye(C)), proj.bias.zero_()
    feature = torch.randn(2, H * W, C)
    ys, xs = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    ref = torch.stack([(xs + 0.5) / W, (ys + 0.5) / H], dim=-1).reshape(1, H * W, 1, 2).expand(2, -1, -1, -1)
    out = attn(torch.randn(2, H * W, C), ref, feature, torch.tensor([[H, W]]), torch.tensor([0]))
    torch.testing.assert_close(out, feature)


def test_initialisation_is_a_ring_of_directions():
    M, L, P = 8, 3, 4
    attn = MSDeformAttn(d_model=32, n_levels=L, n_heads=M, n_points=P)
    ring = attn.sampling_offsets.bias.view(M, L, P, 2)
    assert torch.count_nonzero(attn.sampling_offsets.weight) == 0
    torch.testing.assert_close(ring[0, 0], torch.tensor([[1.0, 0], [2, 0], [3, 0], [4, 0]]))  # head 0: +x
    torch.testing.assert_close(ring[2, 1, 0], torch.tensor([0.0, 1.0]), atol=1e-6, rtol=0)      # head 2: +y
    torch.testing.assert_close(ring[1, 2, 1], torch.tensor([2.0, 2.0]))                         # head 1: diagonal
    radii = ring.abs().amax(-1)                                  # max(|dx|, |dy|) = point index + 1
    torch.testing.assert_close(radii, torch.arange(1.0, P + 1).expand(M, L, P))
    assert torch.equal(ring[:, 0], ring[:, 2])                  # identical for every level
    assert torch.count_nonzero(attn.attention_weights.weight) + torch.count_nonzero(attn.attention_weights.bias) == 0
    assert torch.count_nonzero(attn.value_proj.bias) == 0


def test_record_keeps_locations_and_uniform_weights():
    attn = MSDeformAttn(d_model=16, n_levels=2, n_heads=4, n_points=2)
    attn.record = True
    shapes = torch.tensor([[4, 4], [2, 2]])
    ref = torch.full((1, 3, 2, 2), 0.5)
    attn(torch.randn(1, 3, 16), ref, torch.randn(1, 20, 16), shapes, torch.tensor([0, 16]))
    locations, weights = attn.last_sampling
    assert locations.shape == (1, 3, 4, 2, 2, 2) and weights.shape == (1, 3, 4, 2, 2)
    torch.testing.assert_close(weights, torch.full_like(weights, 0.25))
    # Head 0, point 0 is one pixel to the right of the reference on each level: 1/W_l in x.
    torch.testing.assert_close(locations[0, 0, 0, :, 0], torch.tensor([[0.5 + 1 / 4, 0.5], [0.5 + 1 / 2, 0.5]]))
    assert not locations.requires_grad


def test_padding_mask_zeroes_the_values_and_gradients_reach_offsets():
    torch.manual_seed(3)
    attn = MSDeformAttn(d_model=8, n_levels=1, n_heads=2, n_points=2)
    shapes, starts = torch.tensor([[3, 3]]), torch.tensor([0])
    value = torch.randn(1, 9, 8)
    all_pad = torch.ones(1, 9, dtype=torch.bool)
    out = attn(torch.randn(1, 2, 8), torch.full((1, 2, 1, 2), 0.4), value, shapes, starts, padding_mask=all_pad)
    torch.testing.assert_close(out, torch.zeros_like(out))   # output_proj bias starts at zero
    out = attn(torch.randn(1, 2, 8), torch.full((1, 2, 1, 2), 0.4), value, shapes, starts)
    out.square().sum().backward()
    assert attn.sampling_offsets.weight.grad.abs().sum() > 0
    assert attn.attention_weights.weight.grad.abs().sum() > 0


def test_shape_errors_are_clear():
    attn = MSDeformAttn(d_model=8, n_levels=2, n_heads=2, n_points=2)
    shapes, starts = torch.tensor([[3, 3], [2, 2]]), torch.tensor([0, 9])
    q, ref = torch.randn(1, 2, 8), torch.rand(1, 2, 2, 2)
    with pytest.raises(ValueError, match="sum to 13"):
        attn(q, ref, torch.randn(1, 12, 8), shapes, starts)
    with pytest.raises(ValueError, match="level_start_index"):
        attn(q, ref, torch.randn(1, 13, 8), shapes, torch.tensor([0, 8]))
    with pytest.raises(ValueError, match="n_levels=2"):
        attn(q, ref, torch.randn(1, 9, 8), shapes[:1], starts[:1])
    with pytest.raises(ValueError, match="reference_points"):
        attn(q, torch.rand(1, 2, 1, 2), torch.randn(1, 13, 8), shapes, starts)
    with pytest.raises(ValueError, match="divisible"):
        MSDeformAttn(d_model=10, n_levels=1, n_heads=3, n_points=1)
    with pytest.raises(ValueError, match="sum to"):
        ms_deform_attn_core(torch.randn(1, 5, 1, 2), torch.tensor([[2, 2]]), torch.rand(1, 1, 1, 1, 1, 2),
                            torch.rand(1, 1, 1, 1, 1))


# --- non-square levels: x is divided by W_l and y by H_l (an x/y swap passes every square-level test) ----------

def test_module_equals_loop_reference_on_non_square_levels():
    """The whole module against a from-scratch computation, on levels whose H and W differ (and differ per level):
    location = ref + (dx / W_l, dy / H_l), value = value_proj(input), out = output_proj(weighted samples)."""
    torch.manual_seed(4)
    shapes = [(3, 7), (5, 2)]                                  # (H_l, W_l)
    B, Lq, C, M, L, P = 2, 3, 8, 2, len(shapes), 2
    attn = MSDeformAttn(d_model=C, n_levels=L, n_heads=M, n_points=P).double()
    with torch.no_grad():
        attn.sampling_offsets.weight.normal_(0, 0.5)           # offsets of a few pixels, different per query
        attn.attention_weights.weight.normal_()
    query = torch.randn(B, Lq, C, dtype=torch.float64)
    value_input = torch.randn(B, sum(h * w for h, w in shapes), C, dtype=torch.float64)
    ref = torch.rand(B, Lq, L, 2, dtype=torch.float64) * 0.6 + 0.2
    attn.record = True
    got = attn(query, ref, value_input, torch.tensor(shapes), torch.tensor([0, 21]))

    offsets = attn.sampling_offsets(query).view(B, Lq, M, L, P, 2)
    weights = attn.attention_weights(query).view(B, Lq, M, L * P).softmax(-1).view(B, Lq, M, L, P)
    locations = torch.empty(B, Lq, M, L, P, 2, dtype=torch.float64)
    for l, (h, w) in enumerate(shapes):
        locations[:, :, :, l, :, 0] = ref[:, :, None, l, None, 0] + offsets[:, :, :, l, :, 0] / w
        locations[:, :, :, l, :, 1] = ref[:, :, None, l, None, 1] + offsets[:, :, :, l, :, 1] / h
    torch.testing.assert_close(attn.last_sampling[0], locations)
    value = attn.value_proj(value_input).view(B, -1, M, C // M)
    expected = attn.output_proj(loop_reference(value, shapes, locations, weights))
    torch.testing.assert_close(got, expected)


def test_an_offset_of_one_pixel_reads_the_neighbouring_pixel_on_a_non_square_level():
    """One head, one point, offset (+1, +2) pixels from the centre of pixel (row 1, col 2) of a 4x9 level must
    read pixel (row 3, col 3) exactly."""
    H, W, C = 4, 9, 4
    attn = MSDeformAttn(d_model=C, n_levels=1, n_heads=1, n_points=1)
    with torch.no_grad():
        attn.sampling_offsets.bias.copy_(torch.tensor([1.0, 2.0]))
        for proj in (attn.value_proj, attn.output_proj):
            proj.weight.copy_(torch.eye(C)), proj.bias.zero_()
    feature = torch.arange(H * W * C, dtype=torch.float32).view(1, H * W, C)
    ref = torch.tensor([[[[(2 + 0.5) / W, (1 + 0.5) / H]]]])   # (B=1, Lq=1, L=1, 2) centre of row 1, col 2
    out = attn(torch.zeros(1, 1, C), ref, feature, torch.tensor([[H, W]]), torch.tensor([0]))
    torch.testing.assert_close(out[0, 0], feature[0, 3 * W + 3])
