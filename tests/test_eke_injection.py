"""The Enhanced Key Encoder's injection maps (§3.2) against their formulas, pixel by pixel, and what they mean:
map n is query n's, and it peaks where Q_g looks like q̃_vos_n. (Range checks alone let a wrong axis, a missing
scale or a transposed map through.)"""

import math

import pytest
import torch
import torch.nn.functional as F

from isvos_lite.model.key_encoder import EnhancedKeyEncoder

C4, C_H, N, H16, W16 = 12, 16, 5, 3, 4          # non-square stride-16 grid


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    res4 = torch.randn(2, C4, H16, W16, generator=g)
    queries = torch.randn(2, N, C_H, generator=g)
    query_pos = torch.randn(2, N, C_H, generator=g)
    mask_logits = torch.randn(2, N, 4 * H16, 4 * W16, generator=g) * 3
    return res4, queries, query_pos, mask_logits


def _encoder(injection):
    torch.manual_seed(0)
    return EnhancedKeyEncoder(C4, C_H, 8, N, num_heads=2, num_points=2, ffn_dim=32, injection=injection).eval()


@pytest.mark.parametrize("injection", ["literal", "cosine"])
def test_maps_equal_their_formula_pixel_by_pixel(injection):
    encoder = _encoder(injection)
    out = encoder(*_inputs())
    q_g, q_vos, maps = out["Q_g"], out["q_vos"], out["instance_maps"]     # (B, C_h, h, w), (B, N, C_h), (B, N, h, w)
    tau = encoder.temperature
    for b in range(2):
        centred = q_vos[b] - q_vos[b].mean(0)                              # (N, C_h): centred over the queries
        for n in range(N):
            for y in range(H16):
                for x in range(W16):
                    g = q_g[b, :, y, x]
                    if injection == "literal":                             # sigmoid(<Q_g(x), q_vos_n> / sqrt(C_h))
                        logit = torch.dot(g, q_vos[b, n]) / math.sqrt(C_H)
                    else:                                                  # sigmoid(tau cos(Q_g(x), q_vos_n - mean))
                        logit = tau * F.cosine_similarity(g, centred[n], dim=0)
                    torch.testing.assert_close(maps[b, n, y, x], torch.sigmoid(logit), rtol=1e-5, atol=1e-6,
                                               msg=f"{injection} map {n} at (y={y}, x={x})")


@pytest.mark.parametrize("injection", ["literal", "cosine"])
def test_map_n_belongs_to_query_n(injection):
    """Permuting the queries (with their positions and masks) permutes q_vos and the maps the same way."""
    encoder = _encoder(injection)
    res4, queries, query_pos, mask_logits = _inputs(1)
    out = encoder(res4, queries, query_pos, mask_logits)
    order = torch.tensor([3, 0, 4, 1, 2])
    permuted = encoder(res4, queries[:, order], query_pos[:, order], mask_logits[:, order])
    torch.testing.assert_close(permuted["q_vos"], out["q_vos"][:, order], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(permuted["instance_maps"], out["instance_maps"][:, order], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("injection", ["literal", "cosine"])
def test_a_map_peaks_where_the_frame_feature_matches_its_query(injection):
    """Q_g built so that pixel (y=2, x=1) holds query 0's direction and (y=0, x=3) query 1's: map 0 peaks at the
    first, map 1 at the second (in (row, column) order: a transposed map would peak elsewhere)."""
    encoder = _encoder(injection)
    q_vos = torch.zeros(1, N, C_H)
    for n in range(N):
        q_vos[0, n, n] = 3.0                                   # orthogonal queries
    q_g = torch.randn(1, C_H, H16, W16, generator=torch.Generator().manual_seed(2)) * 0.1
    q_g[0, :, 2, 1] = q_vos[0, 0] * 2
    q_g[0, :, 0, 3] = q_vos[0, 1] * 2
    maps = torch.sigmoid(encoder.injection_logits(q_g, q_vos))           # (1, N, h, w)
    assert divmod(int(maps[0, 0].argmax()), W16) == (2, 1)
    assert divmod(int(maps[0, 1].argmax()), W16) == (0, 3)
    assert maps[0, 0, 2, 1] > maps[0, 1, 2, 1] + 0.2                      # query 1 does not claim query 0's pixel
