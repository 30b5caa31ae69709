"""Memory reading (§3.2 "Memory Reading", Eq. (3)): affinity between the query key and the memory keys,
then the readout F_mem as an affinity-weighted sum of the memory values.

Notation (per batch element):

* memory keys   K: (C_k, N_m) with N_m = T * h * w  (T memory frames at stride 16)
* query key     Q: (C_k, HW)                         (the current frame)
* memory values V: (O, C_v, N_m)                     (one value per object)

Eq. (3) is a softmax over the memory axis of the negative squared L2 distance, scaled by 1/sqrt(C_k)
(STCN, https://github.com/hkchengrex/STCN):

    d(K_i, Q_j) = -||K_i - Q_j||^2 / sqrt(C_k) = (2 K_i.Q_j - ||K_i||^2 - ||Q_j||^2) / sqrt(C_k)

``||Q_j||^2`` is the same for every memory entry i, so it cancels in the softmax over i and is dropped:
one batched matmul K^T Q plus a column of squared key norms. Training uses the full softmax; inference
keeps only the top-k (k = 20, STCN) similarities of every query pixel.

Numerics: the similarity is computed in float32 even under fp16 autocast (the squared norms of large
keys overflow fp16), and the softmax subtracts the per-column maximum before exponentiating, so large
similarities cannot turn into inf / inf = NaN (STCN's top-k path does not). The one
exception is the CPU inference path under bf16 autocast (``blockwise_topk_read``): bf16 has float32's range, and
its similarity is bf16 (the squared key norms still summed in float32), which the J&F does not notice.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["l2_similarity", "softmax_affinity", "readout", "read_memory", "query_major_similarity", "topk_readout",
           "blockwise_topk_read"]


def _l2_logits(mem_key: torch.Tensor, query_key: torch.Tensor, query_major: bool, caller: str,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(2 K_i.Q_j - ||K_i||^2) / sqrt(C_k), laid out (B, N_m, HW) or, with ``query_major``, (B, HW, N_m); float32
    unless ``dtype`` asks for bfloat16 (the CPU fast path under bf16 autocast, see ``blockwise_topk_read``)."""
    if mem_key.dim() != 3 or query_key.dim() != 3:
        raise ValueError(f"{caller} expects mem_key (B, C_k, N_m) and query_key (B, C_k, HW), "
                         f"got {tuple(mem_key.shape)} and {tuple(query_key.shape)}")
    if mem_key.shape[:2] != query_key.shape[:2]:
        raise ValueError(f"mem_key {tuple(mem_key.shape)} and query_key {tuple(query_key.shape)} must share "
                         f"the batch size and the key dimension C_k (dims 0 and 1)")
    key_dim = mem_key.shape[1]
    # float32 even inside an fp16 autocast region: ||K_i||^2 of large keys overflows fp16.
    if dtype not in (torch.float32, torch.bfloat16):
        raise ValueError(f"{caller}: the similarity is float32 or bfloat16 (float16 overflows), got {dtype}")
    with torch.autocast(device_type=mem_key.device.type, enabled=False):
        key_sq = mem_key.float().pow(2).sum(dim=1).to(dtype)             # (B, N_m), summed in float32
        mem_key = mem_key.to(dtype)
        query_key = query_key.to(dtype)
        scale = 1 / math.sqrt(key_dim)
        # baddbmm(C, A, B, beta, alpha) = beta * C + alpha * (A @ B): the same formula in one pass over the
        # (HW, N_m) result instead of three (2 * cross, - key_sq, / sqrt(C_k)); that matrix is the largest of a frame
        if query_major:                                                  # (B, HW, N_m)
            return torch.baddbmm(key_sq.unsqueeze(1), query_key.transpose(1, 2), mem_key, beta=-scale, alpha=2 * scale)
        return torch.baddbmm(key_sq.unsqueeze(2), mem_key.transpose(1, 2), query_key, beta=-scale, alpha=2 * scale)


def l2_similarity(mem_key: torch.Tensor, query_key: torch.Tensor) -> torch.Tensor:
    """Eq. (3) logits: S_ij = (2 K_i.Q_j - ||K_i||^2) / sqrt(C_k), i.e. -||K_i - Q_j||^2 / sqrt(C_k) + const_j.

    Args:
        mem_key: (B, C_k, N_m) memory keys.
        query_key: (B, C_k, HW) query keys.

    Returns:
        (B, N_m, HW) float32 similarities (memory along dim 1).
    """
    return _l2_logits(mem_key, query_key, query_major=False, caller="l2_similarity")


def softmax_affinity(similarity: torch.Tensor, top_k: int | None = None) -> torch.Tensor:
    """Eq. (3): A = softmax over the memory axis (dim 1) of the similarities, max-subtracted.

    Args:
        similarity: (B, N_m, HW).
        top_k: ``None`` for the full softmax (training). With an int k, every query column keeps exactly
            its k largest similarities (softmaxed among themselves) and all other entries are exactly 0;
            k is clipped to N_m (inference, k = 20).

    Returns:
        (B, N_m, HW) affinity in the dtype of ``similarity``; every column sums to 1.
    """
    if similarity.dim() != 3:
        raise ValueError(f"softmax_affinity expects similarity (B, N_m, HW), got {tuple(similarity.shape)}")
    if similarity.shape[1] < 1:
        raise ValueError("softmax_affinity needs at least one memory entry (N_m >= 1); is the memory empty?")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be a positive int or None, got {top_k!r}")
    out_dtype = similarity.dtype
    sim = similarity.float()                                            # sums over N_m stay exact-ish in fp32

    if top_k is None or top_k >= sim.shape[1]:
        shifted = sim - sim.amax(dim=1, keepdim=True)                   # (B, N_m, HW), <= 0
        weights = shifted.exp()
        return (weights / weights.sum(dim=1, keepdim=True)).to(out_dtype)

    values, indices = sim.topk(top_k, dim=1)                            # (B, k, HW) each, sorted, values[:, 0] is the max
    weights = (values - values[:, :1]).exp()                            # (B, k, HW)
    weights = weights / weights.sum(dim=1, keepdim=True)
    affinity = torch.zeros_like(sim).scatter_(1, indices, weights)      # (B, N_m, HW), k non-zeros per column
    return affinity.to(out_dtype)


def readout(affinity: torch.Tensor, mem_value: torch.Tensor) -> torch.Tensor:
    """F_mem = V A: the affinity-weighted sum of memory values, one affinity shared by all objects (§3.2).

    Args:
        affinity: (B, N_m, HW).
        mem_value: (B, O, C_v, N_m).

    Returns:
        (B, O, C_v, HW) in the dtype of ``mem_value``.
    """
    if affinity.dim() != 3 or mem_value.dim() != 4:
        raise ValueError(f"readout expects affinity (B, N_m, HW) and mem_value (B, O, C_v, N_m), "
                         f"got {tuple(affinity.shape)} and {tuple(mem_value.shape)}")
    B, O, C_v, N_m = mem_value.shape
    if affinity.shape[0] != B or affinity.shape[1] != N_m:
        raise ValueError(f"affinity {tuple(affinity.shape)} does not match mem_value {tuple(mem_value.shape)}: "
                         f"batch and memory size N_m must agree")
    values = mem_value.reshape(B, O * C_v, N_m)                         # (B, O*C_v, N_m): objects share the matmul
    out = torch.bmm(values, affinity.to(values.dtype))                  # (B, O*C_v, HW)
    return out.view(B, O, C_v, affinity.shape[2])                       # (B, O, C_v, HW)


def read_memory(query_key: torch.Tensor, mem_key: torch.Tensor, mem_value: torch.Tensor,
                top_k: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Memory reading of one frame (§3.2, Eq. (3)): similarity -> affinity -> readout F_mem.

    Args:
        query_key: (B, C_k, h, w) the current frame's key Q.
        mem_key: (B, C_k, T, h_m, w_m) memory keys K of T frames (usually h_m, w_m = h, w).
        mem_value: (B, O, C_v, T, h_m, w_m) memory values V of O objects.
        top_k: ``None`` = full softmax (training); an int = top-k softmax (inference, 20).

    Returns:
        readout (B, O, C_v, h, w) and affinity (B, T*h_m*w_m, h*w).
    """
    if query_key.dim() != 4:
        raise ValueError(f"query_key must have shape (B, C_k, h, w), got {tuple(query_key.shape)}")
    if mem_key.dim() != 5:
        raise ValueError(f"mem_key must have shape (B, C_k, T, h, w), got {tuple(mem_key.shape)}")
    if mem_value.dim() != 6:
        raise ValueError(f"mem_value must have shape (B, O, C_v, T, h, w), got {tuple(mem_value.shape)}")
    B, C_k, h, w = query_key.shape
    if mem_key.shape[:2] != (B, C_k):
        raise ValueError(f"mem_key {tuple(mem_key.shape)} must share batch size and C_k with query_key "
                         f"{tuple(query_key.shape)}")
    if mem_value.shape[0] != B or mem_value.shape[3:] != mem_key.shape[2:]:
        raise ValueError(f"mem_value {tuple(mem_value.shape)} must match mem_key {tuple(mem_key.shape)} in batch "
                         f"size and (T, h, w)")
    O, C_v = mem_value.shape[1:3]

    similarity = l2_similarity(mem_key.flatten(2), query_key.flatten(2))   # (B, N_m, h*w)
    affinity = softmax_affinity(similarity, top_k)                          # (B, N_m, h*w)
    out = readout(affinity, mem_value.flatten(3))                           # (B, O, C_v, h*w)
    return out.view(B, O, C_v, h, w), affinity


# ---------------------------------------------------------------------------------------------------------
# The fast inference path. Mathematically the same as softmax_affinity(top_k) + readout, but it never builds
# the dense (N_m, HW) affinity: with k = 20 non-zeros per column out of N_m = 16 * h * w, a dense matmul wastes
# >99% of its work. Two layout choices make it fast on CPU: the similarity is computed query-major
# (B, HW, N_m), so top-k runs along the contiguous last axis (about 20x faster than along dim 1), and the
# readout gathers only the k selected memory values per query pixel.

def query_major_similarity(mem_key: torch.Tensor, query_key: torch.Tensor) -> torch.Tensor:
    """Eq. (3) logits laid out query-major: (B, HW, N_m) = l2_similarity(mem_key, query_key).transpose(1, 2).

    Args:
        mem_key: (B, C_k, N_m); query_key: (B, C_k, HW).
    """
    return _l2_logits(mem_key, query_key, query_major=True, caller="query_major_similarity")


def _check_top_k(top_k) -> None:
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive int, got {top_k!r}")


def _cpu_autocast_dtype() -> torch.dtype | None:
    """The dtype of the enclosing CPU autocast region, or None outside one."""
    if hasattr(torch, "get_autocast_dtype"):                              # torch >= 2.4
        return torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None
    return torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else None


def _topk_weights(similarity: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest entries along the last axis: their softmax weights (max-subtracted, float32) and indices,
    (..., k) each."""
    values, indices = similarity.topk(k, dim=-1)                       # sorted: values[..., 0] is the max
    values = values.float()
    weights = (values - values[..., :1]).exp()
    return weights / weights.sum(dim=-1, keepdim=True), indices


def _value_table(mem_value: torch.Tensor) -> torch.Tensor:
    """One batch element's memory values (O, C_v, N_m) as the (N_m, O*C_v) table the readout gathers rows from."""
    O, C_v, N_m = mem_value.shape
    return mem_value.reshape(O * C_v, N_m).T.contiguous()


def _weighted_gather(indices: torch.Tensor, weights: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """F_mem(j) = sum over the k kept entries i of weight_ji * V(i): a weighted sum of k gathered table rows per query
    pixel j, which embedding_bag computes without a (rows, k, O*C_v) copy. indices, weights (rows, k) -> (rows, O*C_v)."""
    return F.embedding_bag(indices, table, per_sample_weights=weights.to(table.dtype), mode="sum")


def topk_readout(similarity: torch.Tensor, mem_value: torch.Tensor, top_k: int):
    """Top-k memory reading from a query-major similarity.

    Args:
        similarity: (B, HW, N_m) from ``query_major_similarity``.
        mem_value: (B, O, C_v, N_m).
        top_k: k (clipped to N_m).

    Returns:
        readout (B, O, C_v, HW), weights (B, HW, k) (softmax over the k kept entries, max-subtracted) and
        indices (B, HW, k) of the kept memory entries.
    """
    if similarity.dim() != 3 or mem_value.dim() != 4:
        raise ValueError(f"topk_readout expects similarity (B, HW, N_m) and mem_value (B, O, C_v, N_m), "
                         f"got {tuple(similarity.shape)} and {tuple(mem_value.shape)}")
    B, HW, N_m = similarity.shape
    _, O, C_v, N_v = mem_value.shape
    if mem_value.shape[0] != B or N_v != N_m:
        raise ValueError(f"similarity {tuple(similarity.shape)} and mem_value {tuple(mem_value.shape)} must agree "
                         f"in batch size and memory size N_m")
    _check_top_k(top_k)
    weights, indices = _topk_weights(similarity, min(top_k, N_m))      # (B, HW, k) each
    out = []
    for b in range(B):
        table = _value_table(mem_value[b])                                                 # (N_m, O*C_v)
        out.append(_weighted_gather(indices[b], weights[b], table).T)                      # (O*C_v, HW)
    return torch.stack(out).view(B, O, C_v, HW), weights, indices


# With a full memory (16 frames) the query-major similarity of a 480p frame is 1,620 x 25,920 floats
# (168 MB): written by baddbmm, then read again by top-k, it never fits in a cache, and on a CPU top-k then waits on
# main memory (about half the time of a 480p lite frame at full memory). Computed for a block of query pixels at a
# time, each block's (rows, N_m) slice is still in the cache when top-k reads it: the same numbers, 1.3-1.7x faster.
QUERY_ROWS_PER_BLOCK = 128


def blockwise_topk_read(mem_key: torch.Tensor, query_key: torch.Tensor, mem_value: torch.Tensor, top_k: int,
                        rows_per_block: int = QUERY_ROWS_PER_BLOCK) -> torch.Tensor:
    """``topk_readout(query_major_similarity(mem_key, query_key), mem_value, top_k)[0]``, ``rows_per_block`` query
    pixels at a time, so the full (B, HW, N_m) similarity never exists (tests/test_memory.py proves them equal).

    Args:
        mem_key: (B, C_k, N_m); query_key: (B, C_k, HW); mem_value: (B, O, C_v, N_m); top_k: k.

    Returns:
        the readout (B, O, C_v, HW).
    """
    if mem_key.dim() != 3 or query_key.dim() != 3 or mem_value.dim() != 4 or mem_value.shape[-1] != mem_key.shape[-1]:
        raise ValueError(f"blockwise_topk_read expects mem_key (B, C_k, N_m), query_key (B, C_k, HW) and mem_value "
                         f"(B, O, C_v, N_m), got {tuple(mem_key.shape)}, {tuple(query_key.shape)}, "
                         f"{tuple(mem_value.shape)}")
    if rows_per_block < 1:
        raise ValueError(f"rows_per_block must be >= 1, got {rows_per_block}")
    _check_top_k(top_k)
    B, _, HW = query_key.shape
    _, O, C_v, N_m = mem_value.shape
    k = min(top_k, N_m)
    device_type = mem_key.device.type
    # Under CPU bf16 autocast (the default on CPUs with native bf16) the similarity itself is bf16: half the bytes of
    # the largest matrix of a frame, about 10 % of a 480p lite frame at a full memory; the J&F of the shipped
    # checkpoint stays within 0.03 of fp32 on every teaching split (docs/PERFORMANCE.md, "Precision"). float32 otherwise.
    dtype = torch.bfloat16 if device_type == "cpu" and _cpu_autocast_dtype() == torch.bfloat16 else torch.float32
    out = mem_value.new_empty(B, HW, O * C_v)
    for b in range(B):
        table = _value_table(mem_value[b])                                                 # (N_m, O*C_v), once
        for start in range(0, HW, rows_per_block):
            block = query_key[b:b + 1, :, start:start + rows_per_block]                     # (1, C_k, rows)
            similarity = _l2_logits(mem_key[b:b + 1], block, query_major=True, caller="blockwise_topk_read",
                                    dtype=dtype)[0]                                         # (rows, N_m)
            weights, indices = _topk_weights(similarity, k)                                # (rows, k) each
            out[b, start:start + block.shape[2]] = _weighted_gather(indices, weights, table)   # (rows, O*C_v)
    return out.transpose(1, 2).reshape(B, O, C_v, HW)
