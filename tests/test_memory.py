"""Memory reading (Eq. (3), §3.2) and soft aggregation (STCN/XMem) against brute-force references."""

from __future__ import annotations

import math

import pytest
import torch

from isvos_lite.model.aggregate import aggregate
from isvos_lite.model.memory import l2_similarity, read_memory, readout, softmax_affinity


def brute_force_affinity(mem_key: torch.Tensor, query_key: torch.Tensor) -> torch.Tensor:
    """softmax_i(-||K_i - Q_j||^2 / sqrt(C_k)) with explicit loops-free distances, in float64."""
    k = mem_key.double().transpose(1, 2)                    # (B, N_m, C_k)
    q = query_key.double().transpose(1, 2)                  # (B, HW, C_k)
    dist_sq = ((k[:, :, None, :] - q[:, None, :, :]) ** 2).sum(-1)   # (B, N_m, HW)
    return torch.softmax(-dist_sq / math.sqrt(mem_key.shape[1]), dim=1)


def test_l2_similarity_softmax_equals_explicit_distance_softmax():
    torch.manual_seed(0)
    mem_key, query_key = torch.randn(2, 8, 30), torch.randn(2, 8, 7 * 9)
    similarity = l2_similarity(mem_key, query_key)
    assert similarity.shape == (2, 30, 63)
    affinity = softmax_affinity(similarity)
    torch.testing.assert_close(affinity.double(), brute_force_affinity(mem_key, query_key), atol=1e-6, rtol=1e-5)


def test_l2_similarity_is_negative_distance_up_to_a_per_query_constant():
    torch.manual_seed(1)
    mem_key, query_key = torch.randn(1, 4, 5), torch.randn(1, 4, 3)
    similarity = l2_similarity(mem_key, query_key)
    dist_sq = ((mem_key[0].T[:, None, :] - query_key[0].T[None, :, :]) ** 2).sum(-1)   # (5, 3)
    expected = -dist_sq / 2.0 + (query_key[0] ** 2).sum(0) / 2.0                       # sqrt(C_k) = 2
    torch.testing.assert_close(similarity[0], expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("k", [1, 3, 20, 50])
def test_top_k_keeps_exactly_k_entries_and_columns_sum_to_one(k):
    torch.manual_seed(2)
    n_mem = 24
    similarity = torch.randn(2, n_mem, 11)
    affinity = softmax_affinity(similarity, top_k=k)
    kept = min(k, n_mem)
    assert ((affinity > 0).sum(dim=1) == kept).all()
    torch.testing.assert_close(affinity.sum(dim=1), torch.ones(2, 11))
    # the kept entries are the k largest similarities, softmaxed among themselves
    values, indices = similarity.topk(kept, dim=1)
    torch.testing.assert_close(affinity.gather(1, indices), torch.softmax(values, dim=1))


def test_top_k_at_least_memory_size_equals_full_softmax():
    torch.manual_seed(3)
    similarity = torch.randn(1, 6, 4)
    torch.testing.assert_close(softmax_affinity(similarity, top_k=6), softmax_affinity(similarity))
    torch.testing.assert_close(softmax_affinity(similarity, top_k=100), softmax_affinity(similarity))


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_top_k_rejects_non_positive_ints(bad):
    with pytest.raises(ValueError, match="top_k"):
        softmax_affinity(torch.randn(1, 4, 4), top_k=bad)


def test_large_keys_do_not_give_nan_in_fp16():
    torch.manual_seed(4)
    # ||k||^2 ~ 64 * 300^2 is far beyond fp16's 65504: the similarity must not be formed in fp16.
    query_key = (torch.randn(1, 64, 3, 4) * 300).half()
    mem_key = (torch.randn(1, 64, 2, 3, 4) * 300).half()
    mem_value = torch.randn(1, 2, 5, 2, 3, 4).half()
    for k in (None, 5):
        out, affinity = read_memory(query_key, mem_key, mem_value, top_k=k)
        assert out.dtype == torch.float16
        assert torch.isfinite(out).all() and torch.isfinite(affinity).all()
        torch.testing.assert_close(affinity.float().sum(1), torch.ones(1, 12))


def test_softmax_affinity_of_large_fp16_similarities_is_finite():
    torch.manual_seed(4)
    similarity = (torch.rand(1, 30, 12) * 60000).half()     # exp() of these overflows without max subtraction
    naive = similarity.float().exp() / similarity.float().exp().sum(1, keepdim=True)
    assert torch.isnan(naive).any()
    for k in (None, 5):
        affinity = softmax_affinity(similarity, top_k=k)
        assert affinity.dtype == torch.float16
        assert torch.isfinite(affinity).all()
        torch.testing.assert_close(affinity.float().sum(1), torch.ones(1, 12), atol=2e-3, rtol=0)
        # essentially all the mass sits on each column's largest similarity
        assert (affinity.argmax(1) == similarity.float().argmax(1)).all()


def test_readout_is_affinity_weighted_sum_shared_by_objects():
    torch.manual_seed(5)
    affinity = softmax_affinity(torch.randn(2, 10, 6))
    mem_value = torch.randn(2, 3, 4, 10)
    out = readout(affinity, mem_value)
    assert out.shape == (2, 3, 4, 6)
    expected = torch.einsum("bocn,bnj->bocj", mem_value, affinity)
    torch.testing.assert_close(out, expected)


def test_read_memory_shapes_and_values_odd_sizes():
    torch.manual_seed(6)
    B, C_k, T, h, w, O, C_v = 2, 8, 3, 7, 9, 2, 5
    query_key = torch.randn(B, C_k, h, w)
    mem_key = torch.randn(B, C_k, T, h, w)
    mem_value = torch.randn(B, O, C_v, T, h, w)
    out, affinity = read_memory(query_key, mem_key, mem_value)
    assert out.shape == (B, O, C_v, h, w)
    assert affinity.shape == (B, T * h * w, h * w)
    expected_aff = brute_force_affinity(mem_key.flatten(2), query_key.flatten(2)).float()
    torch.testing.assert_close(affinity, expected_aff, atol=1e-6, rtol=1e-5)
    expected = torch.einsum("bocn,bnj->bocj", mem_value.flatten(3), expected_aff).view(B, O, C_v, h, w)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    # a memory that holds the query itself reads its own value back when keys are well separated (top-1)
    own, _ = read_memory(query_key * 10, (query_key * 10).unsqueeze(2), mem_value[:, :, :, :1], top_k=1)
    torch.testing.assert_close(own, mem_value[:, :, :, 0])


def test_read_memory_rejects_mismatched_shapes():
    q = torch.randn(1, 8, 4, 4)
    with pytest.raises(ValueError, match="C_k"):
        read_memory(q, torch.randn(1, 6, 2, 4, 4), torch.randn(1, 1, 3, 2, 4, 4))
    with pytest.raises(ValueError, match="mem_value"):
        read_memory(q, torch.randn(1, 8, 2, 4, 4), torch.randn(1, 1, 3, 3, 4, 4))
    with pytest.raises(ValueError, match="query_key"):
        read_memory(torch.randn(8, 4, 4), torch.randn(1, 8, 2, 4, 4), torch.randn(1, 1, 3, 2, 4, 4))
    with pytest.raises(ValueError, match="l2_similarity"):
        l2_similarity(torch.randn(1, 8), torch.randn(1, 8, 3))


def test_read_memory_gradients_reach_keys_and_values():
    torch.manual_seed(7)
    q = torch.randn(1, 4, 3, 5, requires_grad=True)
    k = torch.randn(1, 4, 2, 3, 5, requires_grad=True)
    v = torch.randn(1, 2, 3, 2, 3, 5, requires_grad=True)
    out, _ = read_memory(q, k, v)
    (out * torch.randn_like(out)).sum().backward()
    for t in (q, k, v):
        assert t.grad is not None and t.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------- aggregation


def test_aggregate_sums_to_one_and_matches_formula():
    torch.manual_seed(8)
    prob = torch.rand(2, 3, 5, 7)
    logits, probs = aggregate(prob)
    assert logits.shape == probs.shape == (2, 4, 5, 7)
    torch.testing.assert_close(probs.sum(1), torch.ones(2, 5, 7))
    background = (1 - prob).prod(1, keepdim=True)
    p = torch.cat([background, prob], 1).clamp(1e-7, 1 - 1e-7)
    torch.testing.assert_close(probs, torch.softmax(torch.log(p / (1 - p)), 1))


def test_aggregate_is_monotone_in_each_object_probability():
    torch.manual_seed(9)
    prob = torch.rand(1, 3, 4, 4) * 0.8
    _, before = aggregate(prob)
    raised = prob.clone()
    raised[:, 1] += 0.15
    _, after = aggregate(raised)
    assert (after[:, 2] > before[:, 2]).all()        # object 1 is channel 2 (channel 0 = background)
    assert (after[:, 0] < before[:, 0]).all()        # background shrinks


def test_aggregate_extremes_are_finite_and_hard_masks_stay_hard():
    prob = torch.zeros(1, 2, 2, 2)
    prob[0, 0, 0, 0] = 1.0
    prob[0, 1, 1, 1] = 1.0
    logits, probs = aggregate(prob.half())
    assert torch.isfinite(logits).all()
    assert probs.argmax(1).tolist() == [[[1, 0], [0, 2]]]
    assert probs[0, 1, 0, 0] > 0.99


def test_aggregate_rejects_bad_input():
    with pytest.raises(ValueError, match="B, O, H, W"):
        aggregate(torch.rand(3, 4, 4))
    with pytest.raises(ValueError, match="float"):
        aggregate(torch.ones(1, 1, 2, 2, dtype=torch.long))


def test_topk_readout_equals_dense_topk_path():
    from isvos_lite.model.memory import l2_similarity, query_major_similarity, readout, softmax_affinity, topk_readout
    g = torch.Generator().manual_seed(3)
    mem_key, query_key = torch.randn(2, 8, 45, generator=g), torch.randn(2, 8, 12, generator=g)
    values = torch.randn(2, 3, 5, 45, generator=g)
    qm = query_major_similarity(mem_key, query_key)
    torch.testing.assert_close(qm, l2_similarity(mem_key, query_key).transpose(1, 2))
    for k in (1, 7, 100):
        fast, weights, indices = topk_readout(qm, values, k)
        dense = readout(softmax_affinity(l2_similarity(mem_key, query_key), top_k=k), values)
        torch.testing.assert_close(fast, dense)
        assert indices.shape == (2, 12, min(k, 45))
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, 12))


def test_blockwise_topk_read_equals_the_whole_similarity_path():
    """The cache-friendly memory read: any block size (dividing HW or not) gives topk_readout's readout."""
    from isvos_lite.model.memory import blockwise_topk_read, query_major_similarity, topk_readout
    g = torch.Generator().manual_seed(5)
    mem_key, query_key = torch.randn(2, 8, 90, generator=g), torch.randn(2, 8, 37, generator=g)
    values = torch.randn(2, 3, 5, 90, generator=g)
    for k in (1, 20, 500):
        whole = topk_readout(query_major_similarity(mem_key, query_key), values, k)[0]
        for rows in (1, 7, 37, 64):
            torch.testing.assert_close(blockwise_topk_read(mem_key, query_key, values, k, rows_per_block=rows), whole)
    with pytest.raises(ValueError, match="rows_per_block"):
        blockwise_topk_read(mem_key, query_key, values, 5, rows_per_block=0)


def test_blockwise_topk_read_under_cpu_bf16_autocast_is_close_to_float32():
    """Under CPU bf16 autocast (the default on CPUs with native bf16) the fast read computes its similarity in bf16:
    the readout stays close to the float32 one, and nothing else changes outside autocast."""
    from isvos_lite.model import memory
    from isvos_lite.model.memory import blockwise_topk_read

    g = torch.Generator().manual_seed(7)
    mem_key, query_key = torch.randn(1, 16, 300, generator=g), torch.randn(1, 16, 50, generator=g)
    values = torch.randn(1, 2, 8, 300, generator=g)
    exact = blockwise_topk_read(mem_key, query_key, values, 20)
    assert memory._cpu_autocast_dtype() is None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert memory._cpu_autocast_dtype() == torch.bfloat16
        rounded = blockwise_topk_read(mem_key, query_key, values, 20)
    assert rounded.dtype == torch.float32 and torch.isfinite(rounded).all()
    assert (rounded - exact).abs().max() < 0.25 * exact.abs().max()           # 0.12 here; garbage would be ~1
    assert torch.equal(blockwise_topk_read(mem_key, query_key, values, 20), exact)
    with pytest.raises(ValueError, match="float16 overflows"):
        memory._l2_logits(mem_key, query_key, True, "test", torch.float16)
