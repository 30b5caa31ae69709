"""Is query enhancement alive? A health check of the Enhanced Key Encoder's injection maps (§3.2).

The EKE injects one map per object query into the query key: map_n(x) = sigmoid(logit_n(x)). Query enhancement
can only matter if those maps say *where each instance is*. Four numbers tell whether they do:

``saturated``        fraction of map values below 0.05 or above 0.95. There the sigmoid's slope is under a fifth
                     of its maximum, so the key learns little through the maps. The literal §3.2 form
                     trained on the teaching world reached 98 % (all near 1).
``map_correlation``  mean |Pearson correlation| between the N maps of one frame (over pairs of maps that are not
                     constant). 1 = the N maps are one map repeated; instance-specific maps are far lower.
``mask_agreement``   mean Pearson correlation between map n and query n's own predicted mask probability
                     (pooled to the map's stride 16), over the queries that predict an object (objectness
                     1 - p(no object) > 0.5). High = each map follows its own instance.
``flatten ΔJ&F``     J&F with every map replaced by its own spatial mean at inference minus J&F as trained
                     (``flatten_delta_jf``). This is the causal test: a map that only shifts every key by the same
                     amount cannot matter to the L2 matching of Eq. (3), so flattening it costs nothing.

The first three come from :func:`map_statistics` on any batch of frames; training validation logs them
(``qe_saturated``, ``qe_map_correlation``, ``qe_mask_agreement`` in ``metrics.jsonl``); ``isvos-lite qe-health``
and notebook 05 report all four.

**Mechanism probes.** Flattening removes *where* each instance is. §3.2 asks more of the maps: the key should say
*which* instance a pixel belongs to *in this frame*. Two more probes remove one of those at a time, at inference,
in every frame (memory frames included: their keys are the query keys of earlier frames):

``flatten``      each map replaced by its spatial mean (:class:`FlattenedMaps`; the same as ``flattened_maps``).
``shuffle``      the N maps permuted among the queries by a random derangement, a new one in every frame
                 (:class:`ShuffledMaps`): every map intact, but no map stays with its own query, so memory and
                 query frames disagree about which instance is which.
``other_frame``  frame t gets the maps computed at frame t - lag (frames before ``lag`` get frame 0's;
                 :class:`OtherFrameMaps`): the maps of the same video and queries, but where the instances *were*.

If QE works as §3.2 says, each of them costs J&F (most on look-alike videos); which ones do, when not all, says
what the maps carry (docs/experiments/table3_v2_protocol.md §6). :func:`probe_delta_jf` measures the J&F change
with the training-validation scorer, :func:`evaluate_with_probe` writes the masks and the official per-object CSVs.
"""

from __future__ import annotations

import contextlib
import os
import zlib
from collections import deque

import numpy as np
import torch
import torch.nn.functional as F

from isvos_lite.data.sequences import davis_sequences
from isvos_lite.eval.validation import validate_jf

__all__ = ["SATURATION_LOW", "SATURATION_HIGH", "map_statistics", "frames_of_split", "flattened_maps",
           "flatten_delta_jf", "PROBES", "OTHER_FRAME_LAG", "MapProbe", "FlattenedMaps", "ShuffledMaps",
           "OtherFrameMaps", "make_probe", "derangement", "map_probe", "probe_delta_jf", "evaluate_with_probe"]

SATURATION_LOW, SATURATION_HIGH = 0.05, 0.95


def _pearson_matrix(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x (N, P) -> (N, N) Pearson correlations and (N,) mask of rows with non-zero variance."""
    centred = x - x.mean(dim=1, keepdim=True)
    norm = centred.norm(dim=1)                                                  # (N,)
    alive = norm > 1e-6 * max(1.0, float(x.abs().max()))
    unit = centred / norm.clamp_min(1e-12).unsqueeze(1)
    return unit @ unit.t(), alive


def _row_pearson(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-wise Pearson correlation of a, b (N, P) -> (N,), and the (N,) mask of rows where both vary."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    na, nb = a.norm(dim=1), b.norm(dim=1)
    valid = (na > 1e-6) & (nb > 1e-6)
    return (a * b).sum(1) / (na * nb).clamp_min(1e-12), valid


@torch.no_grad()
def map_statistics(model: torch.nn.Module, frames: torch.Tensor, batch_size: int = 4) -> dict:
    """Saturation, mutual correlation and mask agreement of the EKE's maps on ``frames``.

    Args:
        model: an ISVOS built with query enhancement.
        frames: (B, 3, H, W) uint8 or float in [0, 1]; H and W multiples of 32.

    Returns:
        {"qe_saturated", "qe_map_correlation", "qe_mask_agreement"} as floats in [0, 1] (agreement in [-1, 1]),
        "qe_key_change" (||key - key with the maps flattened|| / ||key||: how much the query key depends on the
        maps at all, a cheaper and finer signal than the J&F change), "qe_logit_mean" (mean map logit) and
        "qe_frames" (frames used). Leaves the model in eval mode.
    """
    if not getattr(model.cfg, "query_enhancement", False):
        raise ValueError("map_statistics needs a model with query enhancement (its key encoder has no injection maps)")
    if frames.dim() != 4 or frames.shape[1] != 3:
        raise ValueError(f"frames must have shape (B, 3, H, W), got {tuple(frames.shape)}")
    model.eval()
    device = next(model.parameters()).device
    saturated, values, correlations, agreements, logit_sum = 0, 0, [], [], 0.0
    key_change_sq, key_sq = 0.0, 0.0
    for start in range(0, frames.shape[0], batch_size):
        feats = model.encode_frame(frames[start:start + batch_size].to(device))
        with flattened_maps(model):                                             # the same frame, maps flattened
            flat_key = model.key_encoder(feats.res4, feats.instance["queries"], feats.instance["query_pos"],
                                         feats.instance["pred_masks"])["key"]
        key_change_sq += float((feats.key.float() - flat_key.float()).pow(2).sum())
        key_sq += float(feats.key.float().pow(2).sum())
        maps = feats.key_extras["instance_maps"].float()                        # (b, N, h, w)
        logits = feats.key_extras["map_logits"].float()                         # (b, N, h, w)
        masks = torch.sigmoid(feats.instance["pred_masks"].float())             # (b, N, H4, W4)
        masks = F.adaptive_avg_pool2d(masks, maps.shape[-2:])                   # (b, N, h, w)
        objectness = 1.0 - feats.instance["pred_logits"].float().softmax(-1)[..., -1]   # (b, N)
        saturated += int(((maps < SATURATION_LOW) | (maps > SATURATION_HIGH)).sum())
        values += maps.numel()
        logit_sum += float(logits.sum())
        for b in range(maps.shape[0]):
            flat = maps[b].flatten(1)                                           # (N, h*w)
            corr, alive = _pearson_matrix(flat)
            n_alive = int(alive.sum())
            if n_alive >= 2:
                sub = corr[alive][:, alive].abs()
                off_diagonal = sub.sum() - sub.diagonal().sum()
                correlations.append(float(off_diagonal) / (n_alive * (n_alive - 1)))
            else:
                correlations.append(1.0)        # no two varying maps: nothing instance-specific
            agreement, valid = _row_pearson(flat, masks[b].flatten(1))
            chosen = valid & (objectness[b] > 0.5)
            if bool(chosen.any()):
                agreements.append(float(agreement[chosen].mean()))
    return {"qe_saturated": saturated / max(values, 1),
            "qe_map_correlation": float(np.mean(correlations)),
            "qe_mask_agreement": float(np.mean(agreements)) if agreements else float("nan"),
            "qe_key_change": (key_change_sq / key_sq) ** 0.5 if key_sq > 0 else 0.0,
            "qe_logit_mean": logit_sum / max(values, 1),
            "qe_frames": int(frames.shape[0])}


def frames_of_split(root: str | os.PathLike, split: str = "val", num_videos: int = 8, per_video: int = 2) -> torch.Tensor:
    """(B, 3, H, W) uint8: ``per_video`` frames spread over each of the first ``num_videos`` videos of a split,
    cropped to multiples of 32 (all videos of the teaching world share one frame size)."""
    sequences = davis_sequences(root, split)[:num_videos]
    if not sequences:
        raise ValueError(f"split {split!r} of {root} has no videos")
    images = []
    for seq in sequences:
        for index in np.linspace(0, len(seq) - 1, per_video).round().astype(int):
            frame = seq.read_frame(int(index))                                  # (H, W, 3) uint8
            h, w = frame.shape[0] // 32 * 32, frame.shape[1] // 32 * 32
            images.append(torch.from_numpy(frame[:h, :w].copy()).permute(2, 0, 1))
    sizes = {tuple(i.shape) for i in images}
    if len(sizes) > 1:
        raise ValueError(f"the videos of {split!r} have different frame sizes {sorted(sizes)}; pass one video at a time")
    return torch.stack(images)


@contextlib.contextmanager
def flattened_maps(model: torch.nn.Module):
    """Within the block, the EKE injects each map's spatial mean instead of the map (the QE-health test)."""
    encoder = model.key_encoder
    before = encoder.flatten_maps
    encoder.flatten_maps = True
    try:
        yield model
    finally:
        encoder.flatten_maps = before


@torch.no_grad()
def flatten_delta_jf(model: torch.nn.Module, root: str | os.PathLike, split: str = "val",
                     num_videos: int | None = None) -> dict:
    """J&F on ``split`` as trained and with flattened maps; ``delta_jf`` = flattened - trained (negative = QE used)."""
    count = num_videos or len(davis_sequences(root, split))
    trained = validate_jf(model, root, split, count)
    with flattened_maps(model):
        flat = validate_jf(model, root, split, count)
    return {"split": split, "videos": trained["val_videos"], "jf": trained["val_jf"], "jf_flattened": flat["val_jf"],
            "delta_jf": flat["val_jf"] - trained["val_jf"]}


# --- mechanism probes: maps shuffled across queries, maps from another frame (and flattened) ------------------------
PROBES = ("flatten", "shuffle", "other_frame")
OTHER_FRAME_LAG = 10            # frames between the frame whose maps are injected and the frame being encoded


class MapProbe:
    """A replacement for the EKE's injection maps at inference: ``probe(maps)`` (B, N, h, w) -> (B, N, h, w).

    ``reset(video)`` is called before each video (``evaluate_with_probe`` and ``probe_delta_jf`` do it), so that a
    probe's result for a video does not depend on which videos came before it.
    """

    name = ""

    def reset(self, video: str | None = None) -> None:
        pass

    def __call__(self, maps: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class FlattenedMaps(MapProbe):
    """Each map replaced by its own spatial mean: no map says where its instance is."""

    name = "flatten"

    def __call__(self, maps: torch.Tensor) -> torch.Tensor:
        return maps.mean(dim=(2, 3), keepdim=True).expand_as(maps)


def derangement(n: int, generator: torch.Generator) -> torch.Tensor:
    """A uniformly random permutation of range(n) with no fixed point (rejection sampling, about e draws), n >= 2."""
    if n < 2:
        raise ValueError(f"a derangement needs at least 2 elements, got {n}")
    while True:
        perm = torch.randperm(n, generator=generator)
        if not bool((perm == torch.arange(n)).any()):
            return perm


class ShuffledMaps(MapProbe):
    """The N maps permuted among the queries, a new random derangement per frame and batch element.

    Output map n of frame b is input map ``permutation[b, n]`` (``last_permutation`` keeps the latest, (B, N)).
    ``reset(video)`` re-seeds the generator from ``seed`` and the video's name: the permutations of a video are the
    same whatever was evaluated before it.
    """

    name = "shuffle"

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.last_permutation: torch.Tensor | None = None

    def reset(self, video: str | None = None) -> None:
        offset = 0 if video is None else zlib.crc32(video.encode())
        self.generator.manual_seed(self.seed * 2**32 + offset)

    def __call__(self, maps: torch.Tensor) -> torch.Tensor:
        if maps.dim() != 4:
            raise ValueError(f"maps must have shape (B, N, h, w), got {tuple(maps.shape)}")
        B, N = maps.shape[:2]
        perm = torch.stack([derangement(N, self.generator) for _ in range(B)]).to(maps.device)   # (B, N)
        self.last_permutation = perm
        return maps[torch.arange(B, device=maps.device)[:, None], perm]                          # (B, N, h, w)


class OtherFrameMaps(MapProbe):
    """Frame t of a video gets the maps computed at frame t - ``lag`` (frames 0 .. lag - 1 get frame 0's).

    Counts calls: with one test-time view (the default inference protocol) a call is a frame. Keeps frame 0's maps
    and the last ``lag + 1`` frames' maps; ``reset()`` (before each video) forgets them.
    """

    name = "other_frame"

    def __init__(self, lag: int = OTHER_FRAME_LAG) -> None:
        if lag < 1:
            raise ValueError(f"lag must be >= 1 frame, got {lag}")
        self.lag = int(lag)
        self.reset()

    def reset(self, video: str | None = None) -> None:
        self.frame = -1
        self.first: torch.Tensor | None = None
        self.recent: deque = deque(maxlen=self.lag + 1)

    def __call__(self, maps: torch.Tensor) -> torch.Tensor:
        if self.first is not None and maps.shape != self.first.shape:
            raise ValueError(f"maps of shape {tuple(maps.shape)} after maps of shape {tuple(self.first.shape)}: "
                             "call reset() before each video (and use one test-time view)")
        self.frame += 1
        current = maps.detach().clone()
        if self.first is None:
            self.first = current
        self.recent.append(current)
        return self.recent[0] if self.frame >= self.lag else self.first


def make_probe(name: str, seed: int = 0, lag: int = OTHER_FRAME_LAG) -> MapProbe:
    """The probe called ``name`` (one of ``PROBES``)."""
    if name == "flatten":
        return FlattenedMaps()
    if name == "shuffle":
        return ShuffledMaps(seed)
    if name == "other_frame":
        return OtherFrameMaps(lag)
    raise ValueError(f"unknown probe {name!r}; choose one of {PROBES}")


@contextlib.contextmanager
def map_probe(model: torch.nn.Module, probe: MapProbe):
    """Within the block, the EKE injects ``probe(maps)`` instead of its maps (the maps it returns stay the computed
    ones). Needs a model with query enhancement."""
    if not getattr(model.cfg, "query_enhancement", False):
        raise ValueError("the map probes need a model with query enhancement (its key encoder has no injection maps)")
    encoder = model.key_encoder
    before = encoder.map_probe
    encoder.map_probe = probe
    try:
        yield probe
    finally:
        encoder.map_probe = before


@torch.no_grad()
def probe_delta_jf(model: torch.nn.Module, root: str | os.PathLike, split: str = "val", probe: str = "flatten",
                   num_videos: int | None = None, trained_jf: float | None = None, seed: int = 0,
                   lag: int = OTHER_FRAME_LAG) -> dict:
    """J&F on ``split`` as trained and with the maps altered by ``probe``; ``delta_jf`` = probed - trained
    (negative = the model uses what the probe removes). ``trained_jf``: the as-trained J&F when already known."""
    count = num_videos or len(davis_sequences(root, split))
    probe_fn = make_probe(probe, seed, lag)
    if trained_jf is None:
        trained_jf = validate_jf(model, root, split, count)["val_jf"]
    with map_probe(model, probe_fn):
        probed = validate_jf(model, root, split, count, before_video=probe_fn.reset)
    return {"probe": probe, "split": split, "videos": probed["val_videos"], "jf": trained_jf,
            "jf_probed": probed["val_jf"], "delta_jf": probed["val_jf"] - trained_jf}


@torch.no_grad()
def evaluate_with_probe(model: torch.nn.Module, root: str | os.PathLike, split: str, probe: MapProbe | None,
                        out_dir: str | os.PathLike, *, workers: int | None = 1, progress: bool = False,
                        **segmenter_kwargs):
    """Segment every video of a DAVIS ``split`` with the maps altered by ``probe`` (None: as trained) and score it.

    The masks go to ``out_dir/<video>/`` (atomically per video; finished videos are kept, so a rerun resumes), then
    the official-equivalent scorer writes ``global_results-<split>.csv`` and ``per-sequence_results-<split>.csv``
    (J and F per object) into ``out_dir``, as ``isvos-lite eval`` does. ``segmenter_kwargs`` go to the
    :class:`~isvos_lite.inference.VideoSegmenter` (pass ``amp=False`` for the fp32 protocol). Use one ``out_dir`` per
    model and probe: a finished video folder is not recomputed. Returns the scorer's result.
    """
    from isvos_lite.eval.runner import segment_sequence
    from isvos_lite.eval.scorer import score_results

    sequences = davis_sequences(root, split)
    if not sequences:
        raise ValueError(f"split {split!r} of {root} has no videos")
    model.eval()
    context = map_probe(model, probe) if probe is not None else contextlib.nullcontext()
    with context:
        for seq in sequences:
            if probe is not None:
                probe.reset(seq.name)
            segment_sequence(model, seq, out_dir, keep_masks=False, progress=progress, **segmenter_kwargs)
    return score_results(root, out_dir, split=split, out_dir=out_dir, workers=workers, progress=progress)
