"""Look, click, track: the instance branch proposes the objects of a frame, a click picks what to follow.

ISVOS carries an instance-segmentation branch (§3.1: Mask2Former's pixel decoder and masked-attention transformer
decoder) that finds the objects of every frame on its own; "look before you match" is the paper's idea. The VOS
branch uses it only inside the key encoder (§3.2). Here it also starts a video: its masks on the first frame are
*proposals*, and a click on one of them replaces drawing the first-frame mask by hand. (SAM 2 starts from clicks too,
with a separate promptable model: https://github.com/facebookresearch/sam2.)

- :func:`propose`: every object query's mask (logit > 0) on one frame, ranked by the class-agnostic score that
  ``isvos-lite instance-ap`` ranks them by (P(some object) x mean mask probability x SAM's stability score,
  :func:`isvos_lite.eval.instance_ap.query_predictions`), duplicates removed with the same test (a mask overlapping a
  higher-scored one by IoU > 0.7, :func:`isvos_lite.eval.instance_ap.suppress_duplicates`; ``instance-ap`` ranks such a
  duplicate after every other mask, here it is dropped: in a palette PNG it would hide behind its original), the
  ``top_k`` best kept. Proposal ``r`` (1 = best) is id ``r`` in :meth:`Proposals.id_mask`.
- :func:`pick_by_clicks`: each click (x, y) picks the best-scored proposal containing that pixel; a click on no
  proposal is refused with the nearest proposal and its distance (:class:`NoProposalAtClick`). Clicks are separate
  objects: a proposal that also holds another click (a mask that merges two clicked objects) is passed over when
  another proposal holds this click alone.
- :class:`Picks` is the first-frame mask: click ``i`` is object id ``i`` (1, 2, ...); ``picks.to_mask()`` gives the
  (H, W) id mask, and ``VideoSegmenter.step(frame, picks)`` accepts the picks themselves (they convert with
  ``np.asarray``).

``isvos-lite propose`` writes the proposals as a palette PNG and a numbered figure; ``isvos-lite predict --click X,Y``
tracks the picked proposals through a video.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from isvos_lite.eval.instance_ap import DUPLICATE_IOU, query_predictions, suppress_duplicates

__all__ = ["Proposal", "Proposals", "Pick", "Picks", "NoProposalAtClick", "propose", "pick_by_clicks",
           "picks_to_mask", "write_proposals", "parse_click", "DEFAULT_TOP_K"]

DEFAULT_TOP_K = 8          # proposals kept per frame (the lite preset has 16 object queries)


@dataclass(frozen=True, eq=False)
class Proposal:
    """One object the instance branch proposes: its mask at the frame's size and its class-agnostic score."""

    rank: int                 # 1 = best scored; also its id in Proposals.id_mask() and its number in the figure
    query: int                # which object query of the transformer decoder made it
    score: float              # objectness x quality x stability (the instance-ap ranking score)
    mask: np.ndarray = field(repr=False)   # (H, W) bool
    objectness: float = 0.0   # 1 - p(no object)
    quality: float = 0.0      # mean mask probability inside the mask
    stability: float = 0.0    # IoU of the mask at logit +1 and at logit -1

    @property
    def area(self) -> int:
        return int(self.mask.sum())

    @property
    def inside_point(self) -> tuple[int, int]:
        """(x, y) of the mask pixel farthest from the mask's boundary: a safe place to click it."""
        distance = cv2.distanceTransform(np.pad(self.mask, 1).astype(np.uint8), cv2.DIST_L2, 5)[1:-1, 1:-1]
        y, x = np.unravel_index(int(distance.argmax()), distance.shape)
        return int(x), int(y)

    def contains(self, x: int, y: int) -> bool:
        return bool(self.mask[y, x])

    def distance_to(self, x: float, y: float) -> float:
        """Euclidean distance in pixels from (x, y) to the nearest pixel of the mask (0 inside it)."""
        ys, xs = np.nonzero(self.mask)
        return float(np.hypot(xs - x, ys - y).min()) if len(xs) else float("inf")


class Proposals(list):
    """The ranked proposals of one frame (a list of :class:`Proposal`, best first) and the frame's size."""

    def __init__(self, items, size: tuple[int, int]):
        super().__init__(items)
        self.size = tuple(int(v) for v in size)            # (H, W)

    @property
    def masks(self) -> np.ndarray:
        """(K, H, W) bool, best first."""
        return np.stack([p.mask for p in self]) if len(self) else np.zeros((0, *self.size), bool)

    @property
    def scores(self) -> np.ndarray:
        return np.array([p.score for p in self], dtype=np.float64)

    def id_mask(self) -> np.ndarray:
        """(H, W) uint8: proposal ``r`` drawn with id ``r``; where proposals overlap, the better-ranked one wins."""
        ids = np.zeros(self.size, np.uint8)
        for proposal in reversed(self):
            ids[proposal.mask] = proposal.rank
        return ids

    def describe(self) -> str:
        """One line per proposal: rank, score and its factors, share of the frame, a point inside it."""
        h, w = self.size
        lines = [f"{len(self)} proposal(s) on a {w}x{h} frame (rank: score = objectness x quality x stability)"]
        for p in self:
            x, y = p.inside_point
            lines.append(f"  {p.rank:2d}: {p.score:.3f} = {p.objectness:.2f} x {p.quality:.2f} x {p.stability:.2f}"
                         f"   {100 * p.area / (h * w):5.1f} % of the frame   click e.g. at {x},{y}")
        return "\n".join(lines)


def _as_uint8_frame(frame) -> np.ndarray:
    """Any frame :func:`isvos_lite.inference.frame_to_tensor` accepts -> (H, W, 3) uint8 RGB."""
    array = np.asarray(frame) if not isinstance(frame, torch.Tensor) else None
    if array is not None and array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3:
        return array
    from isvos_lite.inference import frame_to_tensor
    tensor = frame_to_tensor(frame)                                        # (3, H, W) float in [0, 1]
    return (tensor.permute(1, 2, 0) * 255).round().clamp(0, 255).to(torch.uint8).numpy()


@torch.no_grad()
def propose(model, frame, top_k: int | None = DEFAULT_TOP_K, *, duplicate_iou: float = DUPLICATE_IOU,
            max_size: int | None = 480) -> Proposals:
    """The instance branch's ranked object proposals on one frame (see the module docstring).

    Args:
        model: an ISVOS model (any checkpoint: a full one, or an instance-stage one: only the backbone and the IS
            branch run).
        frame: (H, W, 3) uint8 RGB (or anything ``VideoSegmenter.step`` accepts as a frame).
        top_k: how many proposals to keep (None: every non-duplicate, non-empty query mask).
        duplicate_iou: a mask overlapping a better-scored one by more than this IoU is a duplicate and dropped.
        max_size: frames whose short side is larger are processed at this short side (as the segmenter does) and the
            masks resized back bilinearly; None: always at full size.
    """
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1 or None (all proposals), got {top_k}")
    if not 0.0 <= duplicate_iou < 1.0:
        raise ValueError(f"duplicate_iou must be in [0, 1), got {duplicate_iou}")
    if max_size is not None and max_size < 32:
        raise ValueError(f"max_size must be >= 32 pixels or None, got {max_size}")
    image = _as_uint8_frame(frame)
    height, width = image.shape[:2]
    scale = 1.0 if max_size is None or min(height, width) <= max_size else max_size / min(height, width)
    if scale != 1.0:
        image = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                           interpolation=cv2.INTER_AREA)
    pred = query_predictions(model, image)
    masks, scores = pred["query_masks"], pred["query_scores"]
    if scale != 1.0:                                     # back to the frame's size (the probabilities' 0.5 level)
        masks = F.interpolate(masks[None].float(), size=(height, width), mode="bilinear", align_corners=False)[0] > 0.5
    order, ranked = suppress_duplicates(masks, scores, "nms", duplicate_iou)
    proposals = []
    for query, score in zip(order.tolist(), ranked.tolist()):
        mask = masks[query].numpy()
        if not mask.any():
            continue
        proposals.append(Proposal(rank=len(proposals) + 1, query=int(query), score=float(score), mask=mask,
                                  objectness=float(pred["query_objectness"][query]),
                                  quality=float(pred["query_quality"][query]),
                                  stability=float(pred["query_stability"][query])))
        if top_k is not None and len(proposals) == top_k:
            break
    return Proposals(proposals, (height, width))


# ---------------------------------------------------------------------------------------------- clicks
class NoProposalAtClick(ValueError):
    """A click that lies on no proposal; ``nearest`` is the nearest proposal (or None), ``distance`` in pixels."""

    def __init__(self, message: str, click: tuple[float, float], nearest: Proposal | None, distance: float):
        super().__init__(message)
        self.click, self.nearest, self.distance = click, nearest, distance


@dataclass(frozen=True)
class Pick:
    """Click ``object_id`` (1, 2, ...) at ``click`` = (x, y) picked ``proposal``."""

    object_id: int
    click: tuple[int, int]
    proposal: Proposal


class Picks(list):
    """The picked proposals of one frame, in click order: the first-frame mask of a video (click i = object id i).

    ``np.asarray(picks)`` is :meth:`to_mask`, so ``VideoSegmenter.step(frame, picks)`` takes them as the mask."""

    def __init__(self, items, size: tuple[int, int]):
        super().__init__(items)
        self.size = tuple(int(v) for v in size)

    def to_mask(self) -> np.ndarray:
        return picks_to_mask(self)

    def __array__(self, dtype=None, copy=None):
        mask = self.to_mask()
        return mask if dtype is None else mask.astype(dtype)

    def describe(self) -> str:
        h, w = self.size
        return "\n".join(f"click {p.object_id} at {p.click[0]},{p.click[1]} -> proposal {p.proposal.rank} (score "
                         f"{p.proposal.score:.3f}, {100 * p.proposal.area / (h * w):.1f} % of the frame) = object "
                         f"{p.object_id}" for p in self)


def parse_click(text: str) -> tuple[int, int]:
    """"X,Y" (pixels; x to the right, y down, from the top-left corner) -> (x, y); a clear error otherwise."""
    parts = str(text).replace(" ", "").split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        x, y = (float(v) for v in parts)
    except ValueError:
        raise ValueError(f"click {text!r} is not X,Y: give two pixel coordinates separated by a comma, e.g. "
                         f"--click 120,64 (x from the left, y from the top)") from None
    return int(round(x)), int(round(y))


def pick_by_clicks(proposals: Proposals, clicks) -> Picks:
    """Each click (x, y) picks the best-scored proposal that contains that pixel; click ``i`` becomes object id ``i``.

    Every click is its own object, so proposals holding another click's pixel too (one mask over two clicked objects)
    are passed over while some proposal holds this click alone.

    Raises :class:`NoProposalAtClick` (a ValueError) naming the nearest proposal and its distance when a click lies
    on none of them, and ValueError for a click outside the frame or two clicks on one proposal.
    """
    if not isinstance(proposals, Proposals):
        raise ValueError(f"pick_by_clicks: expected the Proposals that propose() returns, got {type(proposals).__name__}")
    clicks = [tuple(c) for c in clicks]
    if not clicks:
        raise ValueError("pick_by_clicks: give at least one click (x, y)")
    if len(clicks) > 255:
        raise ValueError(f"pick_by_clicks: {len(clicks)} clicks, but a mask holds at most 255 objects")
    height, width = proposals.size
    points = []
    for object_id, click in enumerate(clicks, start=1):
        if len(click) != 2:
            raise ValueError(f"click {object_id} is {click}: give (x, y)")
        x, y = int(round(float(click[0]))), int(round(float(click[1])))
        if not (0 <= x < width and 0 <= y < height):
            raise ValueError(f"click {object_id} at {x},{y} is outside the {width}x{height} frame (x in 0..{width - 1}, "
                             f"y in 0..{height - 1}, from the top-left corner)")
        points.append((x, y))
    picks, chosen = [], {}
    for object_id, (x, y) in enumerate(points, start=1):
        inside = [p for p in proposals if p.contains(x, y)]          # best-scored first
        if not inside:
            raise _refusal(proposals, object_id, (x, y))
        others = [point for point in points if point != (x, y)]
        alone = [p for p in inside if not any(p.contains(*point) for point in others)]
        proposal = (alone or inside)[0]
        if proposal.rank in chosen:
            raise ValueError(f"clicks {chosen[proposal.rank]} and {object_id} both pick proposal {proposal.rank}: one "
                             f"object cannot be two; click another object, or draw the mask (--mask) to split it")
        chosen[proposal.rank] = object_id
        picks.append(Pick(object_id, (x, y), proposal))
    return Picks(picks, proposals.size)


def _refusal(proposals: Proposals, object_id: int, click: tuple[int, int]) -> NoProposalAtClick:
    x, y = click
    if not len(proposals):
        return NoProposalAtClick(f"click {object_id} at {x},{y}: the instance branch proposed no object on this frame; "
                                 f"draw the first-frame mask instead (--mask)", click, None, float("inf"))
    distances = [p.distance_to(x, y) for p in proposals]
    best = int(np.argmin(distances))
    nearest = proposals[best]
    inside_x, inside_y = nearest.inside_point
    return NoProposalAtClick(
        f"click {object_id} at {x},{y} lies on none of the {len(proposals)} proposals (background to the instance "
        f"branch); the nearest is proposal {nearest.rank} (score {nearest.score:.3f}), {distances[best]:.1f} px away "
        f"(a point well inside it: {inside_x},{inside_y}). Click inside an object, keep more proposals (propose --top-k, "
        f"predict --proposals), or draw the mask (--mask)", click, nearest, distances[best])


def picks_to_mask(picks: Picks) -> np.ndarray:
    """(H, W) uint8 first-frame id mask: pick ``i``'s proposal drawn with id ``i``. Where picked proposals overlap the
    better-ranked proposal keeps the pixel, so every click's own pixel stays with the object it picked."""
    if not isinstance(picks, Picks):
        raise ValueError(f"picks_to_mask: expected the Picks that pick_by_clicks() returns, got {type(picks).__name__}")
    mask = np.zeros(picks.size, np.uint8)
    for pick in sorted(picks, key=lambda p: -p.proposal.rank):       # worst rank first, best painted last
        mask[pick.proposal.mask] = pick.object_id
    return mask


# ---------------------------------------------------------------------------------------------- files
def write_proposals(path: str | os.PathLike, proposals: Proposals) -> Path:
    """Write :meth:`Proposals.id_mask` as a palette PNG (DAVIS palette; pixel value = proposal rank), atomically."""
    from isvos_lite.data.palette import write_mask

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"proposals file {path} must end in .png (a palette PNG of proposal numbers)")
    return write_mask(path, proposals.id_mask())
