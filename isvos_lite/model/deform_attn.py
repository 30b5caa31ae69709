"""Multi-scale deformable attention (Deformable DETR, Zhu et al. 2021), pure PyTorch.

ISVOS uses it twice: in the pixel decoder of the IS branch (§3.1, 3 levels) and in the Enhanced Key
Encoder, Eq. (2) (§3.2): q̃_vos = DeformAttn(q̃_ins, p, Q_g), one level.

Each query looks at only n_points locations per head and level, placed around a *reference point*
by learned offsets, and mixes the bilinearly sampled values with learned softmax weights:

    out(q) = W_o Σ_heads Σ_levels Σ_points A_{hlp}(q) · V_h^l( ref_l(q) + Δ_{hlp}(q) / (W_l, H_l) )

Sampling uses ``F.grid_sample`` (bilinear, zeros outside, ``align_corners=False``), so no compiled
CUDA op is needed (the most common install failure of the reference code,
https://github.com/fundamentalvision/Deformable-DETR; its ``ms_deform_attn_core_pytorch`` is the same computation).
Coordinates are normalised (x, y) in [0, 1]; pixel (i, j) of a level has its centre at
((j + 0.5) / W_l, (i + 0.5) / H_l).

Two implementations of the same sum, tested equal (``tests/test_deform_attn.py``):

* :func:`ms_deform_attn_core`, the reference: one ``grid_sample`` per level, then the weighted sum. Used
  whenever gradients are needed (training), where its backward is the faster one.
* :func:`ms_deform_attn_gather`, the inference path: a bilinear sample is itself a weighted sum of 4 pixels,
  so the whole of Eq. (2) for one query and head is a weighted sum of 4·L·P pixels of that head's value map;
  ``F.embedding_bag(mode="sum", per_sample_weights=...)`` computes exactly such sums of gathered rows, without
  materialising the (B·M, D, Lq, L·P) sample tensor. Its work is done by :func:`gather_level_major`, which takes
  the locations and weights level-major (``MSDeformAttn`` produces them in that layout directly). Faster on a CPU
  (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ms_deform_attn_core", "ms_deform_attn_gather", "gather_level_major", "softmax_short_last_axis",
           "MSDeformAttn"]


def _shape_list(spatial_shapes: torch.Tensor) -> list[tuple[int, int]]:
    if spatial_shapes.dim() != 2 or spatial_shapes.shape[1] != 2:
        raise ValueError(f"spatial_shapes must have shape (L, 2) with rows (H_l, W_l), got {tuple(spatial_shapes.shape)}")
    return [(int(h), int(w)) for h, w in spatial_shapes.tolist()]


def ms_deform_attn_core(value: torch.Tensor, spatial_shapes: torch.Tensor, sampling_locations: torch.Tensor,
                        attention_weights: torch.Tensor) -> torch.Tensor:
    """Sample every level at the given locations and take the attention-weighted sum (Eq. (2)).

    Args:
        value: (B, S, M, D) per-head values of all levels, flattened row-major and concatenated; S = Σ H_l·W_l.
        spatial_shapes: (L, 2) long, rows (H_l, W_l).
        sampling_locations: (B, Lq, M, L, P, 2) normalised (x, y) in [0, 1] (outside -> zeros).
        attention_weights: (B, Lq, M, L, P), normally softmaxed over (L, P) per head.

    Returns:
        (B, Lq, M·D), heads concatenated.
    """
    shapes = _shape_list(spatial_shapes)
    B, S, M, D = value.shape
    _, Lq, _, L, P, _ = sampling_locations.shape
    if S != sum(h * w for h, w in shapes):
        raise ValueError(f"value has S={S} positions but spatial_shapes {shapes} sum to {sum(h * w for h, w in shapes)}")
    if L != len(shapes):
        raise ValueError(f"sampling_locations has {L} levels but spatial_shapes has {len(shapes)}")
    if attention_weights.shape != sampling_locations.shape[:-1]:
        raise ValueError(f"attention_weights shape {tuple(attention_weights.shape)} must equal "
                         f"sampling_locations shape without the last axis {tuple(sampling_locations.shape[:-1])}")

    value_per_level = value.split([h * w for h, w in shapes], dim=1)   # L x (B, H_l*W_l, M, D)
    grids = 2 * sampling_locations - 1                                 # [0, 1] -> [-1, 1] for grid_sample
    sampled = []
    for level, (h, w) in enumerate(shapes):
        # (B, H_l*W_l, M, D) -> (B*M, D, H_l, W_l)
        value_l = value_per_level[level].permute(0, 2, 3, 1).reshape(B * M, D, h, w)
        # (B, Lq, M, P, 2) -> (B*M, Lq, P, 2)
        grid_l = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        sampled.append(F.grid_sample(value_l, grid_l, mode="bilinear", padding_mode="zeros",
                                     align_corners=False))           # (B*M, D, Lq, P)
    sampled_all = torch.stack(sampled, dim=-2).flatten(-2)            # (B*M, D, Lq, L*P)
    weights = attention_weights.transpose(1, 2).reshape(B * M, 1, Lq, L * P)
    out = (sampled_all * weights).sum(-1)                             # (B*M, D, Lq)
    return out.view(B, M * D, Lq).transpose(1, 2).contiguous()         # (B, Lq, M*D)


def ms_deform_attn_gather(value: torch.Tensor, spatial_shapes: torch.Tensor, sampling_locations: torch.Tensor,
                          attention_weights: torch.Tensor) -> torch.Tensor:
    """:func:`ms_deform_attn_core` (same arguments, same result) as one weighted gather-and-sum.

    grid_sample(align_corners=False) reads a point (x, y) in [0, 1] at pixel coordinates (x·W - 0.5, y·H - 0.5)
    and mixes its 4 neighbouring pixels with the bilinear weights (1-fx)(1-fy), fx(1-fy), (1-fx)fy, fx·fy;
    neighbours outside the map count as zeros. Multiplying those by the attention weight A turns Eq. (2) for one
    (query, head) into a sum over 4·L·P (pixel, weight) pairs, which ``F.embedding_bag`` evaluates directly (one
    call per level and corner: 4·L partial sums of P pairs each, added up).
    Zeros outside: every level's map is zero-padded (1 pixel before, 2 after) and the pixel coordinates are
    clamped to [-1, W] x [-1, H], so every neighbour index is valid and the ones outside read padding.
    """
    # Level-major and contiguous, so that every tensor of the sum is a plain (B, Lq, M, P) block: element-wise ops
    # on strided slices whose last axis is P = 4 long are several times slower on a CPU.
    xy = sampling_locations.permute(5, 3, 0, 1, 2, 4).contiguous()                  # (2, L, B, Lq, M, P)
    attention = attention_weights.permute(3, 0, 1, 2, 4).contiguous()               # (L, B, Lq, M, P)
    return gather_level_major(value, spatial_shapes, xy, attention)


def gather_level_major(value: torch.Tensor, spatial_shapes: torch.Tensor, xy: torch.Tensor,
                       attention: torch.Tensor) -> torch.Tensor:
    """The sum of :func:`ms_deform_attn_gather` with locations and weights laid out level-major.

    Args:
        value: (B, S, M, D) as in :func:`ms_deform_attn_core`.
        xy: (2, L, B, Lq, M, P) normalised sampling locations, x then y (contiguous).
        attention: (L, B, Lq, M, P) attention weights (contiguous).

    Returns:
        (B, Lq, M·D).
    """
    shapes = _shape_list(spatial_shapes)
    B, S, M, D = value.shape
    _, L, _, Lq, _, P = xy.shape

    # The table of rows to gather from: per (batch, head), every level's map zero-padded, flattened, concatenated.
    tables, level_starts, start = [], [], 0
    for (h, w), v in zip(shapes, value.split([h * w for h, w in shapes], dim=1)):
        v = v.reshape(B, h, w, M, D).permute(0, 3, 1, 2, 4)                          # (B, M, h, w, D)
        tables.append(F.pad(v, (0, 0, 1, 2, 1, 2)).flatten(2, 3))                     # (B, M, (h+3)(w+3), D)
        level_starts.append(start)
        start += (h + 3) * (w + 3)
    rows_per_head = start
    table = torch.cat(tables, dim=2).reshape(B * M * rows_per_head, D)
    head_start = torch.arange(B * M, device=value.device).view(B, 1, M, 1) * rows_per_head   # (B, 1, M, 1)

    bags = B * Lq * M                                                                 # one sum per (b, query, head)
    out = None
    for level, (h, w) in enumerate(shapes):
        x = (xy[0, level] * w - 0.5).clamp_(-1.0, float(w))                          # (B, Lq, M, P) pixel coords
        y = (xy[1, level] * h - 0.5).clamp_(-1.0, float(h))
        x0, y0 = x.floor(), y.floor()
        fx, fy = x - x0, y - y0
        row = w + 3                                                                   # padded row length
        top_left = head_start + level_starts[level] + (y0.long() + 1) * row + (x0.long() + 1)
        a_bottom = attention[level] * fy                                              # A·fy
        a_top = attention[level] - a_bottom                                           # A·(1-fy)
        corners = ((top_left, a_top - a_top * fx), (top_left + 1, a_top * fx),
                   (top_left + row, a_bottom - a_bottom * fx), (top_left + row + 1, a_bottom * fx))
        # one weighted gather-and-sum per (level, corner); the 4·L partial sums add up to Eq. (2)
        for index, weight in corners:
            part = F.embedding_bag(index.reshape(bags, P), table, mode="sum",
                                   per_sample_weights=weight.reshape(bags, P).to(table.dtype))   # (B*Lq*M, D)
            out = part if out is None else out.add_(part)
    return out.view(B, Lq, M * D)


def softmax_short_last_axis(x: torch.Tensor) -> torch.Tensor:
    """``x.softmax(-1)`` written out: exp(x - max) / sum. Same numbers (to float rounding); faster than ``torch.softmax``
    on a CPU when the last axis is as short as Eq. (2)'s L·P = 12 weights per head."""
    e = (x - x.amax(-1, keepdim=True)).exp_()
    return e / e.sum(-1, keepdim=True)


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention module (Deformable DETR; ISVOS Eq. (2), §3.1 and §3.2).

    Layers (names as in Deformable DETR, so checkpoints map 1:1):
      sampling_offsets  Linear(C -> M·L·P·2), offsets in pixels of each level,
      attention_weights Linear(C -> M·L·P), softmax over the L·P samples of each head,
      value_proj, output_proj  Linear(C -> C).

    Without gradients (inference) it runs :func:`gather_level_major` instead of :func:`ms_deform_attn_core`
    (same numbers, tested); ``MSDeformAttn.fast_inference = False`` switches that off everywhere.

    Set ``module.record = True`` to keep the last sampling locations and weights (detached) in
    ``module.last_sampling = (locations (B, Lq, M, L, P, 2), weights (B, Lq, M, L, P))`` for visualisation.
    """

    fast_inference = True

    def __init__(self, d_model: int, n_levels: int, n_heads: int, n_points: int) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        if min(n_levels, n_heads, n_points) < 1:
            raise ValueError(f"n_levels, n_heads and n_points must be >= 1, got {n_levels}, {n_heads}, {n_points}")
        self.d_model, self.n_levels, self.n_heads, self.n_points = d_model, n_levels, n_heads, n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.record = False
        self.last_sampling: tuple[torch.Tensor, torch.Tensor] | None = None
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        """Deformable DETR's initialisation (``_reset_parameters`` of its ``MSDeformAttn``,
        https://github.com/fundamentalvision/Deformable-DETR): head h looks along direction 2πh/M, point p at radius
        p+1 pixels (the direction scaled so its larger coordinate is 1); uniform weights; xavier projections."""
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        directions = torch.stack([angles.cos(), angles.sin()], dim=-1)                 # (M, 2)
        directions = directions / directions.abs().max(dim=-1, keepdim=True).values
        radii = torch.arange(1, self.n_points + 1, dtype=torch.float32)                 # (P,)
        ring = directions[:, None, None, :] * radii[None, None, :, None]               # (M, 1, P, 2)
        ring = ring.expand(self.n_heads, self.n_levels, self.n_points, 2)              # (M, L, P, 2)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(ring.reshape(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for proj in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(proj.weight)
            nn.init.zeros_(proj.bias)

    def forward(self, query: torch.Tensor, reference_points: torch.Tensor, value_input: torch.Tensor,
                spatial_shapes: torch.Tensor, level_start_index: torch.Tensor,
                padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """
        Args:
            query: (B, Lq, C) queries (position embedding already added).
            reference_points: (B, Lq, L, 2) normalised (x, y) per level.
            value_input: (B, S, C) all levels flattened and concatenated, S = Σ H_l·W_l.
            spatial_shapes: (L, 2) long, rows (H_l, W_l).
            level_start_index: (L,) long, start of each level in S.
            padding_mask: optional (B, S) bool, True = padding (its values are zeroed).

        Returns:
            (B, Lq, C).
        """
        shapes = _shape_list(spatial_shapes)
        B, Lq, C = self._check_inputs(query, reference_points, value_input, shapes, level_start_index, padding_mask)
        M, L, P = self.n_heads, self.n_levels, self.n_points

        value = self.value_proj(value_input)                                          # (B, S, C)
        if padding_mask is not None:
            value = value.masked_fill(padding_mask[..., None], 0.0)
        value = value.view(B, value.shape[1], M, C // M)                              # (B, S, M, D)

        offsets = self.sampling_offsets(query).view(B, Lq, M, L, P, 2)               # pixels of each level
        logits = self.attention_weights(query).view(B, Lq, M, L * P)
        level_size_xy = spatial_shapes.flip(-1).to(offsets)                           # (L, 2): (W_l, H_l)
        needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (value, offsets, logits, reference_points))

        if needs_grad or not self.fast_inference:
            # Eq. (2) as written: softmax over the L·P samples of each head; (W_l, H_l) per level turns pixel
            # offsets into normalised (x, y) offsets; grid_sample per level (its backward is the faster one).
            weights = logits.softmax(-1).view(B, Lq, M, L, P)
            locations = (reference_points[:, :, None, :, None, :]
                         + offsets / level_size_xy[None, None, None, :, None, :])     # (B, Lq, M, L, P, 2)
            out = ms_deform_attn_core(value, spatial_shapes, locations, weights)      # (B, Lq, C)
        else:
            # Inference: the same numbers, computed level-major (see ms_deform_attn_gather), 3-4x faster on a CPU.
            weights = softmax_short_last_axis(logits).view(B, Lq, M, L, P)
            xy = (offsets.permute(5, 3, 0, 1, 2, 4).contiguous()                      # (2, L, B, Lq, M, P) pixels
                  .div_(level_size_xy.T[:, :, None, None, None, None])                # -> normalised offsets
                  .add_(reference_points.permute(3, 2, 0, 1)[..., None, None]))      # + (2, L, B, Lq, 1, 1)
            out = gather_level_major(value, spatial_shapes, xy, weights.permute(3, 0, 1, 2, 4).contiguous())
            locations = xy.permute(2, 3, 4, 1, 5, 0)                                  # (B, Lq, M, L, P, 2) view
        if self.record:
            self.last_sampling = (locations.detach().contiguous(), weights.detach())
        return self.output_proj(out)

    def _check_inputs(self, query, reference_points, value_input, shapes, level_start_index, padding_mask):
        if query.dim() != 3 or query.shape[-1] != self.d_model:
            raise ValueError(f"query must be (B, Lq, {self.d_model}), got {tuple(query.shape)}")
        B, Lq, C = query.shape
        if len(shapes) != self.n_levels:
            raise ValueError(f"spatial_shapes has {len(shapes)} levels but the module was built for n_levels={self.n_levels}")
        if tuple(reference_points.shape) != (B, Lq, self.n_levels, 2):
            raise ValueError(f"reference_points must be (B, Lq, L, 2) = {(B, Lq, self.n_levels, 2)}, "
                             f"got {tuple(reference_points.shape)}")
        if value_input.dim() != 3 or value_input.shape[0] != B or value_input.shape[2] != C:
            raise ValueError(f"value_input must be (B={B}, S, C={C}), got {tuple(value_input.shape)}")
        total = sum(h * w for h, w in shapes)
        if value_input.shape[1] != total:
            raise ValueError(f"value_input has S={value_input.shape[1]} positions but spatial_shapes {shapes} "
                             f"sum to {total}; flatten every level row-major and concatenate them")
        starts = [0]
        for h, w in shapes[:-1]:
            starts.append(starts[-1] + h * w)
        if level_start_index.tolist() != starts:
            raise ValueError(f"level_start_index {level_start_index.tolist()} does not match spatial_shapes {shapes} "
                             f"(expected {starts})")
        if padding_mask is not None and (padding_mask.shape != value_input.shape[:2] or padding_mask.dtype != torch.bool):
            raise ValueError(f"padding_mask must be a bool tensor of shape (B, S) = {tuple(value_input.shape[:2])}, "
                             f"got {padding_mask.dtype} {tuple(padding_mask.shape)}")
        return B, Lq, C
