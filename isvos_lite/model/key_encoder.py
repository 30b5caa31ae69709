"""The Enhanced Key Encoder (§3.2, Eq. (2), Fig. 3): an instance-aware query key from F_res4 and q̃_ins.

Paper, step by step, and how this file reads it:

1. Q_g = 3x3 conv(F_res4) with C_h = C_d channels ("we follow [15] to first apply a 3x3 conv").
2. q̃_vos = DeformAttn(q̃_ins, p, Q_g)                                                         Eq. (2)
   Single-level multi-scale deformable attention (Deformable DETR,
   https://github.com/fundamentalvision/Deformable-DETR): queries are the IS branch's updated object queries q̃_ins
   (+ their positional embedding), the value map is Q_g flattened, and it is wrapped like a Deformable-DETR
   decoder layer: attention -> residual -> LayerNorm -> FFN -> residual -> LayerNorm.
   **Reference points p** — the paper only says "a set of 2-d reference points". We take the
   instance-aware reading: p_n is the centroid of query n's predicted mask, i.e.
   the confidence-weighted mean pixel centre of sigmoid(mask_logits) over the pixels where it exceeds 0.5,
   detached from the graph; a query whose mask is empty (no pixel above 0.5) falls back to the image
   centre (0.5, 0.5). See :func:`mask_centroids`.
3. Injection "reversely through a dot product ... activated by a sigmoid and concatenated with Q_g":
   one map per query (N channels), Q_cat = [Q_g, maps]. Two forms (``injection``):

   ``"literal"``  maps_n = sigmoid(<Q_g(x), q̃_vos_n> / sqrt(C_h)), the text of §3.2 as written.
   ``"cosine"``   maps_n = sigmoid(tau * cos(Q_g(x), q̃_vos_n - mean_m q̃_vos_m)), tau = tau_max * sigmoid(theta),
                  so every logit lies in [-tau_max, tau_max] (tau_max = 4: maps stay inside [0.018, 0.982]).
                  **This is a deviation from the literal text** (the default of every preset). The literal
                  logits can grow without bound: once the sigmoid saturates it passes no gradient, and the L2
                  matching of Eq. (3) ignores an offset shared by all keys. Normalising both factors removes
                  the norm growth, the bound keeps the logits from running away (|logit| <= tau_max), and
                  centring the queries (subtracting their mean over the N queries) stops a direction that all
                  queries share from making the N maps copies of one map. What the literal form did in
                  training, and what this one does: docs/DESIGN_NOTES.md §1. The literal form stays available
                  so that a student can watch the failure (notebook 05).
   ``"identity"`` the cosine maps as above, but what is concatenated to Q_g is not the N maps in query order:
                  it is, at every pixel, the map-weighted mean of the (projected) enhanced queries,
                  I(x) = sum_n maps_n(x) W q̃_vos_n / sum_n maps_n(x), W: Linear(C_h -> N) (so Q_cat keeps the
                  width C_h + N). **A further deviation** (ours, an experiment): the N map channels are in
                  query order, and which query covers which instance can change between frames, so the key
                  projection cannot read "this pixel belongs to the instance seen in memory" from channel n.
                  I(x) is the same whichever query slot covers the instance: an order-invariant instance
                  identity per pixel, built from the same dot-product-and-sigmoid maps. Measured results of
                  all three forms: docs/DESIGN_NOTES.md §1 and docs/experiments/.
   Training adds an auxiliary term (``qe_alignment_loss``, weight ``TrainConfig.qe_align_weight``): each map's
   logits are pulled towards its own query's predicted instance mask (detached, pooled to stride 16), weighted
   by the query's objectness, which keeps the N maps instance-specific instead of N copies of one foreground
   map. The paper trains the key only through the VOS loss; this term is ours too.
4. Key Q = 3x3 conv(Q_cat) to C_k channels ("a convolutional projection head"); orthogonal weight and
   zero bias as STCN's key projection (``KeyProjection``, https://github.com/hkchengrex/STCN).

``flatten_maps`` (a runtime switch, not a weight): replace each map by its own spatial mean before the
concatenation. It is the QE-health test of :mod:`isvos_lite.eval.qe_health`: if the key projection really uses
*where* each instance is, flattening the maps must cost J&F. ``map_probe`` (a runtime hook, not a weight): a function
of the maps (B, N, h, w) whose result is injected instead; the probes of :mod:`isvos_lite.eval.qe_health` (maps
shuffled across the queries, maps of another frame) use it. The returned maps (``instance_maps``) are always the
computed ones.

Without query enhancement (Table 3 baseline) the key is 3x3 conv(Q_g) and the deformable attention, the
FFN, the norms and the injection do not exist.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from isvos_lite.model.deform_attn import MSDeformAttn

__all__ = ["mask_centroids", "balance_to", "EnhancedKeyEncoder", "qe_alignment_loss", "INJECTIONS"]

INJECTIONS = ("cosine", "literal", "identity")


def mask_centroids(mask_logits: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Reference points p of Eq. (2): the centroid of each query's predicted mask, in normalised (x, y).

    The weight of a pixel is its probability sigmoid(logit) where that exceeds ``threshold`` and 0 elsewhere
    (the predicted mask, weighted by confidence), so the faint probabilities of a large background do not
    drag the centroid towards the centre. Pixel (i, j) of an (H, W) map sits at ((j + 0.5) / W, (i + 0.5) / H),
    the convention of grid_sample with align_corners=False. Empty masks give the image centre (0.5, 0.5).
    The result is detached: p is where to look, not something to learn through.

    Args:
        mask_logits: (B, N, H, W) mask logits of the N queries (any stride; stride 4 in ISVOS).

    Returns:
        (B, N, 2) normalised (x, y) in [0, 1].
    """
    if mask_logits.dim() != 4:
        raise ValueError(f"mask_logits must have shape (B, N, H, W), got {tuple(mask_logits.shape)}")
    with torch.no_grad():
        prob = torch.sigmoid(mask_logits.float())                            # (B, N, H, W)
        weight = torch.where(prob > threshold, prob, torch.zeros_like(prob))
        H, W = prob.shape[-2:]
        ys = (torch.arange(H, device=prob.device, dtype=prob.dtype) + 0.5) / H  # (H,)
        xs = (torch.arange(W, device=prob.device, dtype=prob.dtype) + 0.5) / W  # (W,)
        mass = weight.sum(dim=(2, 3))                                       # (B, N)
        x_moment = (weight.sum(dim=2) * xs).sum(dim=2)                      # (B, N): sum over rows, then columns
        y_moment = (weight.sum(dim=3) * ys).sum(dim=2)                      # (B, N)
        empty = mass <= 0
        safe_mass = torch.where(empty, torch.ones_like(mass), mass)
        centroid = torch.stack([x_moment / safe_mass, y_moment / safe_mass], dim=-1)   # (B, N, 2)
        centre = torch.full_like(centroid, 0.5)
        return torch.where(empty.unsqueeze(-1), centre, centroid).to(mask_logits.dtype)


def balance_to(x: torch.Tensor, reference: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """x with its deviation from its per-channel spatial mean rescaled to the spatial deviation of ``reference``.

    x (B, C, h, w), reference (B, C_r, h, w) -> (B, C, h, w). Per frame b the factor is
    dev(reference_b) / dev(x_b), dev = RMS over channels and pixels of the value minus its channel's spatial mean;
    the factor is detached (a gain, not something to learn through). A spatially constant x (deviation <= eps)
    becomes exactly its spatial mean.
    """
    def deviation(t: torch.Tensor) -> torch.Tensor:                                          # (B, 1, 1, 1)
        return (t - t.mean(dim=(2, 3), keepdim=True)).pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()

    mean = x.mean(dim=(2, 3), keepdim=True)                                                   # (B, C, 1, 1)
    spread = deviation(x)                                                                     # (B, 1, 1, 1)
    # a (numerically) constant x has nothing to rescale: amplifying its rounding noise would invent structure
    gain = torch.where(spread > eps, deviation(reference) / spread.clamp_min(eps), torch.zeros_like(spread)).detach()
    return mean + (x - mean) * gain


class EnhancedKeyEncoder(nn.Module):
    """Query key of the current frame from F_res4 and the IS-branch queries (§3.2, Eq. (2)).

    Args:
        in_channels: channels of F_res4.
        hidden_dim: C_h (= C_d, the query width), channels of Q_g.
        key_dim: C_k.
        num_queries: N, the number of instance maps concatenated to Q_g.
        num_heads, num_points: deformable attention heads and sampling points (one level).
        ffn_dim: hidden width of the FFN after the deformable attention.
        query_enhancement: False gives the Table 3 baseline (key = conv(Q_g)).
        injection: "cosine" (bounded, the default), "literal" (§3.2 as written) or "identity" (cosine maps,
            order-invariant map-weighted query content); see the module docstring.
        tau_max: bound of the cosine injection's logits.
        balance: rescale the injected channels' deviation from their spatial mean to Q_g's (per frame, the factor
            detached) before the concatenation, so that both halves of Q_cat vary on the same scale; the spatial
            means are kept, so flattened maps inject exactly what they inject without balancing (an experiment;
            docs/DESIGN_NOTES.md §1 has the measured scales).
        tau_init: the temperature it starts from (default tau_max / 2). The temperature is one scalar behind a
            sigmoid, and AdamW moves it by about the learning rate per step, so in a short run the start is in
            effect a choice of the map contrast.
    """

    def __init__(self, in_channels: int, hidden_dim: int, key_dim: int, num_queries: int, num_heads: int,
                 num_points: int, ffn_dim: int, query_enhancement: bool = True, injection: str = "cosine",
                 tau_max: float = 4.0, tau_init: float | None = None, balance: bool = False) -> None:
        super().__init__()
        if injection not in INJECTIONS:
            raise ValueError(f"injection must be one of {INJECTIONS}, got {injection!r}")
        if tau_max <= 0:
            raise ValueError(f"tau_max must be > 0, got {tau_max}")
        if tau_init is not None and not 0 < tau_init < tau_max:
            raise ValueError(f"tau_init must lie strictly between 0 and tau_max ({tau_max}), got {tau_init}")
        self.injection, self.tau_max, self.balance = injection, float(tau_max), bool(balance)
        self.flatten_maps = False            # runtime switch of the QE-health test (not saved with the weights)
        # runtime hook of the QE-health probes (not saved): maps (B, N, h, w) -> the maps injected instead
        self.map_probe = None
        if min(in_channels, hidden_dim, key_dim, num_queries, ffn_dim) < 1:
            raise ValueError(f"EnhancedKeyEncoder widths must be >= 1, got in_channels={in_channels}, "
                             f"hidden_dim={hidden_dim}, key_dim={key_dim}, num_queries={num_queries}, ffn_dim={ffn_dim}")
        self.in_channels, self.hidden_dim, self.key_dim = in_channels, hidden_dim, key_dim
        self.num_queries, self.query_enhancement = num_queries, query_enhancement

        self.global_proj = nn.Conv2d(in_channels, hidden_dim, kernel_size=3, padding=1)     # F_res4 -> Q_g
        if query_enhancement:
            # Eq. (2) wrapped as a Deformable-DETR decoder layer (https://github.com/fundamentalvision/Deformable-DETR).
            self.deform_attn = MSDeformAttn(hidden_dim, n_levels=1, n_heads=num_heads, n_points=num_points)
            self.attn_norm = nn.LayerNorm(hidden_dim)
            self.ffn = nn.Sequential(nn.Linear(hidden_dim, ffn_dim), nn.ReLU(), nn.Linear(ffn_dim, hidden_dim))
            self.ffn_norm = nn.LayerNorm(hidden_dim)
            if injection in ("cosine", "identity"):
                # tau = tau_max * sigmoid(theta); theta = 0 starts at tau_max / 2, else at tau_init
                theta = 0.0 if tau_init is None else math.log(tau_init / (tau_max - tau_init))
                self.injection_temperature = nn.Parameter(torch.tensor(float(theta)))
            if injection == "identity":
                # W: the query content each pixel receives (N channels, the width of the N maps it replaces)
                self.identity_proj = nn.Linear(hidden_dim, num_queries)
            key_in = hidden_dim + num_queries                                                 # Q_cat = [Q_g, maps]
        else:
            key_in = hidden_dim
        self.key_proj = nn.Conv2d(key_in, key_dim, kernel_size=3, padding=1)                 # -> query key Q
        nn.init.orthogonal_(self.key_proj.weight)
        nn.init.zeros_(self.key_proj.bias)

    def forward(self, res4: torch.Tensor, queries: torch.Tensor | None = None,
                query_pos: torch.Tensor | None = None, mask_logits: torch.Tensor | None = None) -> dict:
        """
        Args:
            res4: F_res4, (B, C4, h, w) at stride 16.
            queries: q̃_ins, (B, N, C_h) (required with query enhancement, ignored without).
            query_pos: (B, N, C_h) positional embedding of the queries, or None (no positional term).
            mask_logits: (B, N, H4, W4) the queries' predicted mask logits, which give the reference points
                (required with query enhancement, ignored without).

        Returns:
            {"key": Q (B, C_k, h, w), "Q_g": (B, C_h, h, w), "q_vos": (B, N, C_h) | None,
             "instance_maps": (B, N, h, w) | None, "map_logits": (B, N, h, w) | None,
             "reference_points": (B, N, 2) | None}
        """
        if res4.dim() != 4 or res4.shape[1] != self.in_channels:
            raise ValueError(f"res4 must have shape (B, {self.in_channels}, h, w), got {tuple(res4.shape)}")
        q_g = self.global_proj(res4)                                                          # (B, C_h, h, w)
        if not self.query_enhancement:
            return {"key": self.key_proj(q_g), "Q_g": q_g, "q_vos": None, "instance_maps": None,
                    "map_logits": None, "reference_points": None}

        self._check_query_inputs(res4, queries, query_pos, mask_logits)
        reference_points = mask_centroids(mask_logits).to(q_g.dtype)                          # (B, N, 2)
        q_vos = self.enhance_queries(q_g, queries, query_pos, reference_points)              # (B, N, C_h)
        map_logits = self.injection_logits(q_g, q_vos)                                        # (B, N, h, w)
        instance_maps = torch.sigmoid(map_logits)                                             # (B, N, h, w)
        injected = instance_maps
        if self.flatten_maps:                                                                 # QE-health test
            injected = instance_maps.mean(dim=(2, 3), keepdim=True).expand_as(instance_maps)
        elif self.map_probe is not None:                                                      # QE-health probes
            injected = self.map_probe(instance_maps)
        if self.injection == "identity":
            injected = self.identity_features(injected, q_vos)                                # (B, N, h, w)
        if self.balance:
            injected = balance_to(injected, q_g)                                              # (B, N, h, w)
        q_cat = torch.cat([q_g, injected], dim=1)                                             # (B, C_h + N, h, w)
        return {"key": self.key_proj(q_cat), "Q_g": q_g, "q_vos": q_vos, "instance_maps": instance_maps,
                "map_logits": map_logits, "reference_points": reference_points}

    def identity_features(self, maps: torch.Tensor, q_vos: torch.Tensor) -> torch.Tensor:
        """I(x) = sum_n maps_n(x) W q̃_vos_n / sum_n maps_n(x): maps (B, N, h, w), q_vos (B, N, C_h) -> (B, N, h, w).

        The output's N channels are features (W's outputs), not queries: permuting the queries (and their maps)
        leaves I unchanged.
        """
        content = self.identity_proj(q_vos)                                                   # (B, N, N_out)
        weighted = torch.einsum("bnhw,bnc->bchw", maps, content)                              # (B, N_out, h, w)
        return weighted / maps.sum(dim=1, keepdim=True).clamp_min(1e-6)                      # (B, N_out, h, w)

    @property
    def temperature(self) -> float | None:
        """tau of the bounded (cosine / identity) injection (None for the literal form or without QE)."""
        if not self.query_enhancement or self.injection == "literal":
            return None
        return float(self.tau_max * torch.sigmoid(self.injection_temperature.detach()))

    def injection_logits(self, q_g: torch.Tensor, q_vos: torch.Tensor) -> torch.Tensor:
        """Logits of the injection maps: q_g (B, C_h, h, w), q_vos (B, N, C_h) -> (B, N, h, w).

        literal: <Q_g(x), q̃_vos_n> / sqrt(C_h) (unbounded);
        cosine: tau * cos(Q_g(x), q̃_vos_n - mean over queries of q̃_vos), |logit| <= tau_max.
        """
        if self.injection == "literal":
            return torch.einsum("bchw,bnc->bnhw", q_g, q_vos) / math.sqrt(self.hidden_dim)
        g = F.normalize(q_g, dim=1, eps=1e-6)                                                 # (B, C_h, h, w)
        # centred queries: what query n has that the average query has not, so that a direction shared by all
        # queries cannot turn the N maps into copies of one map
        q = q_vos - q_vos.mean(dim=1, keepdim=True)                                           # (B, N, C_h)
        q = F.normalize(q, dim=-1, eps=1e-6)                                                  # (B, N, C_h)
        tau = self.tau_max * torch.sigmoid(self.injection_temperature)                        # scalar in (0, tau_max)
        return tau * torch.einsum("bchw,bnc->bnhw", g, q)

    def enhance_queries(self, q_g: torch.Tensor, queries: torch.Tensor, query_pos: torch.Tensor | None,
                        reference_points: torch.Tensor) -> torch.Tensor:
        """Eq. (2): q̃_vos = DeformAttn(q̃_ins, p, Q_g), then residual + LN, FFN, residual + LN.

        q_g (B, C_h, h, w), queries (B, N, C_h), query_pos (B, N, C_h) | None, reference_points (B, N, 2)
        -> (B, N, C_h).
        """
        B, C, h, w = q_g.shape
        value = q_g.flatten(2).transpose(1, 2)                                                # (B, h*w, C_h)
        spatial_shapes = torch.tensor([[h, w]], dtype=torch.long, device=q_g.device)          # (1, 2)
        level_start_index = torch.zeros(1, dtype=torch.long, device=q_g.device)               # (1,)
        attn_query = queries if query_pos is None else queries + query_pos                    # (B, N, C_h)
        attended = self.deform_attn(attn_query, reference_points.unsqueeze(2), value,
                                    spatial_shapes, level_start_index)                        # (B, N, C_h)
        x = self.attn_norm(queries + attended)                                                # (B, N, C_h)
        return self.ffn_norm(x + self.ffn(x))                                                 # (B, N, C_h)

    def _check_query_inputs(self, res4, queries, query_pos, mask_logits) -> None:
        B = res4.shape[0]
        expected = (B, self.num_queries, self.hidden_dim)
        if queries is None or mask_logits is None:
            raise ValueError("query enhancement is on: EnhancedKeyEncoder needs the IS-branch queries (B, N, C_h) and "
                             "their mask_logits (B, N, H4, W4); pass them, or build it with query_enhancement=False")
        if tuple(queries.shape) != expected:
            raise ValueError(f"queries must have shape (B, N, C_h) = {expected}, got {tuple(queries.shape)}")
        if query_pos is not None and tuple(query_pos.shape) != expected:
            raise ValueError(f"query_pos must have shape (B, N, C_h) = {expected}, got {tuple(query_pos.shape)}")
        if mask_logits.dim() != 4 or tuple(mask_logits.shape[:2]) != (B, self.num_queries):
            raise ValueError(f"mask_logits must have shape (B, N, H4, W4) with B={B}, N={self.num_queries}, "
                             f"got {tuple(mask_logits.shape)}")


def qe_alignment_loss(map_logits: torch.Tensor, mask_logits: torch.Tensor, class_logits: torch.Tensor) -> torch.Tensor:
    """Auxiliary loss tying injection map n to query n's own predicted instance mask (ours, see the module docstring).

    Args:
        map_logits: (B, N, h, w) injection-map logits at stride 16 (``EnhancedKeyEncoder`` output "map_logits").
        mask_logits: (B, N, H4, W4) the queries' mask logits (stride 4); used as a detached soft target.
        class_logits: (B, N, K+1) the queries' class logits, last = "no object"; the objectness 1 - p(no object)
            (detached) weights each query, so queries that predict nothing do not dictate their map.

    Returns:
        scalar: objectness-weighted mean binary cross-entropy between sigmoid(map_logits) and the pooled mask
        probabilities.
    """
    if map_logits.dim() != 4 or mask_logits.dim() != 4 or map_logits.shape[:2] != mask_logits.shape[:2]:
        raise ValueError(f"map_logits (B, N, h, w) and mask_logits (B, N, H4, W4) must agree on B, N; got "
                         f"{tuple(map_logits.shape)} and {tuple(mask_logits.shape)}")
    with torch.no_grad():
        target = F.adaptive_avg_pool2d(torch.sigmoid(mask_logits.float()), map_logits.shape[-2:])   # (B, N, h, w)
        objectness = 1.0 - class_logits.float().softmax(-1)[..., -1]                                 # (B, N)
    per_query = F.binary_cross_entropy_with_logits(map_logits.float(), target, reduction="none").mean(dim=(2, 3))
    return (per_query * objectness).sum() / objectness.sum().clamp_min(1e-6)
