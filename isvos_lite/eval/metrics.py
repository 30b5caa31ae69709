"""Per-frame DAVIS region similarity J and boundary accuracy F, exactly as the official DAVIS 2017
evaluation computes them.

The paper reports mean J, mean F and their average J&F on DAVIS 2016/2017 (§4.1, "Evaluation
datasets and metrics"; Tables 1-5). This module gives the per-frame numbers; ``scorer.py`` turns
them into Mean / Recall / Decay and the official CSV files. Every rule below follows
``docs/DAVIS_METRIC.md`` (the official code, https://github.com/davisvideochallenge/davis2017-evaluation, read and
run on synthetic data); section numbers "spec §n" refer to it.

For one object k of a frame, with G = (gt == k) and P = (pred == k):

* **J** (spec §5) = |G ∩ P| / |G ∪ P|, and 1 when both are empty.
* **F** (spec §6) compares the 1-px boundary maps b(P) and b(G) (:func:`boundary_map`). A boundary
  pixel of one mask counts as matched when a boundary pixel of the other lies within the tolerance
  disk D_r = {(dy, dx): dy² + dx² <= r²}, r = ceil(0.008 * image diagonal)
  (:func:`tolerance_radius`). precision = matched b(P) / |b(P)|, recall = matched b(G) / |b(G)|,
  F = 2PR / (P + R), with the special cases of :func:`f_from_counts`.

How this is fast and still exact
--------------------------------
The official code builds full-frame boolean boundary maps per object and dilates each with the
disk (two full-frame ``cv2.dilate`` per object-frame, ~6 ms at 480p). Here:

1. :class:`LabelBoundaries` finds the boundary pixels of *every* object of a label map in one pass:
   a pixel is on b(M_k) iff it differs from a neighbour (right, below, below-right; spec §6.1) and
   either it or that neighbour has label k. Boundaries are short, so they are kept as coordinate
   lists (a few thousand points), not as images.
2. :func:`count_pairs_within_radius` counts the points of one list that have a point of the other
   list inside the disk, for both directions at once. The disk is a union of a few axis-aligned
   rectangles (:func:`disk_rectangles`), and "is there a point in this rectangle?" is four
   look-ups in a summed-area table (``cv2.integral``) of the other list, built only over the two
   lists' bounding box. All counts are integers, so precision, recall and F are the same
   floating-point operations on the same integers as in the official code: equal bit for bit.
3. Before all that, :func:`frame_scores` crops both label maps to the joint bounding box of their
   non-zero pixels (everything outside is background in both).
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np

__all__ = [
    "BOUND_TH",
    "tolerance_radius",
    "disk",
    "disk_rectangles",
    "jaccard",
    "boundary_map",
    "f_from_counts",
    "boundary_f",
    "LabelBoundaries",
    "count_within_radius",
    "count_pairs_within_radius",
    "frame_scores",
]

BOUND_TH = 0.008   # official boundary tolerance: a fraction of the image diagonal (spec §6.2)


# --------------------------------------------------------------------------------------
# the tolerance disk
# --------------------------------------------------------------------------------------

def tolerance_radius(height: int, width: int, bound_th: float = BOUND_TH) -> int:
    """Boundary tolerance r in pixels: ceil(bound_th * sqrt(H² + W²)) (spec §6.2).

    480x854 -> 8, 480x910 -> 9, 480x1152 -> 10, 1080x1920 -> 18. As in the official code, a
    ``bound_th >= 1`` is a radius in pixels (it must then be a whole number here).
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"tolerance_radius: frame size must be positive, got {height}x{width}")
    if bound_th <= 0:
        raise ValueError(f"tolerance_radius: bound_th must be > 0, got {bound_th}")
    if bound_th >= 1:
        if bound_th != int(bound_th):
            raise ValueError(f"tolerance_radius: a bound_th >= 1 is a radius in pixels and must be whole, got {bound_th}")
        return int(bound_th)
    # same expression as the official code: np.ceil(bound_th * np.linalg.norm(mask.shape))
    return int(np.ceil(bound_th * np.linalg.norm((height, width))))


def disk(radius: int) -> np.ndarray:
    """The structuring element D_r as a (2r+1, 2r+1) uint8 array: 1 where dy² + dx² <= r² (spec §6.3).

    Equal to ``skimage.morphology.disk(r)``; used by references and figures, not by the fast path.
    """
    offsets = np.arange(-radius, radius + 1)
    return ((offsets[:, None] ** 2 + offsets[None, :] ** 2) <= radius * radius).astype(np.uint8)


def disk_rectangles(radius: int) -> list[tuple[int, int]]:
    """D_r as a union of centred rectangles, each given as (half_height, half_width).

    Row dy of the disk spans |dx| <= w(dy) = floor(sqrt(r² - dy²)), and w shrinks as |dy| grows.
    For each distinct half-width w, the rows that reach at least w are |dy| <= h(w); the
    rectangle |dy| <= h(w), |dx| <= w lies inside the disk, and together they cover it.
    r = 8 gives 6 rectangles: (0, 8), (3, 7), (5, 6), (6, 5), (7, 3), (8, 0).
    """
    if radius < 0 or radius != int(radius):
        raise ValueError(f"disk_rectangles: radius must be a whole number >= 0, got {radius}")
    radius = int(radius)
    half_width = [math.isqrt(radius * radius - dy * dy) for dy in range(radius + 1)]
    rectangles = []
    for w in sorted(set(half_width), reverse=True):
        h = max(dy for dy in range(radius + 1) if half_width[dy] >= w)
        rectangles.append((h, w))
    return rectangles


# --------------------------------------------------------------------------------------
# one object, plain definitions
# --------------------------------------------------------------------------------------

def jaccard(gt_mask: np.ndarray, pred_mask: np.ndarray) -> float:
    """J = |G ∩ P| / |G ∪ P| for two (H, W) boolean masks; 1.0 when both are empty (spec §5)."""
    gt_mask, pred_mask = _as_bool_pair(gt_mask, pred_mask, "jaccard")
    intersection = int(np.count_nonzero(gt_mask & pred_mask))
    union = int(np.count_nonzero(gt_mask | pred_mask))
    return 1.0 if union == 0 else intersection / union


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """The official 1-px boundary map b(M) of an (H, W) mask, as a bool array (spec §6.1).

    b[y, x] = M[y,x] xor M[y,x+1]  or  M[y,x] xor M[y+1,x]  or  M[y,x] xor M[y+1,x+1];
    on the last row only the right neighbour counts, on the last column only the one below, and
    the bottom-right pixel is never a boundary. So the image border is not an edge (a full-frame
    mask has no boundary), and the boundary sits on the outside of an object's top/left sides and
    on its own last pixels at the bottom/right.
    """
    mask = np.asarray(mask).astype(bool)
    if mask.ndim != 2:
        raise ValueError(f"boundary_map: expected an (H, W) mask, got shape {mask.shape}")
    b = np.zeros_like(mask)
    b[:, :-1] |= mask[:, :-1] ^ mask[:, 1:]      # right neighbour (every row)
    b[:-1, :] |= mask[:-1, :] ^ mask[1:, :]      # neighbour below (every column)
    b[:-1, :-1] |= mask[:-1, :-1] ^ mask[1:, 1:]  # below-right (not on the last row / column)
    return b


def f_from_counts(n_pred: int, n_gt: int, pred_matched: int, gt_matched: int) -> float:
    """Boundary F from boundary-pixel counts, with the official special cases (spec §6.4).

    n_pred = |b(P)|, n_gt = |b(G)|; pred_matched = boundary pixels of P within r of b(G),
    gt_matched = boundary pixels of G within r of b(P).

    =====================  =========  ======  =====
    case                   precision  recall  F
    =====================  =========  ======  =====
    n_pred = 0, n_gt = 0   1          1       1
    n_pred = 0, n_gt > 0   1          0       0
    n_pred > 0, n_gt = 0   0          1       0
    otherwise              pm/n_pred  gm/n_gt 2PR/(P+R), 0 if P+R = 0
    =====================  =========  ======  =====
    """
    if n_pred == 0 and n_gt > 0:
        precision, recall = 1, 0
    elif n_pred > 0 and n_gt == 0:
        precision, recall = 0, 1
    elif n_pred == 0 and n_gt == 0:
        precision, recall = 1, 1
    else:
        precision = pred_matched / n_pred
        recall = gt_matched / n_gt
    if precision + recall == 0:
        return 0.0
    # same operation order as the official code, so the float result is identical
    return float(2 * precision * recall / (precision + recall))


def boundary_f(gt_mask: np.ndarray, pred_mask: np.ndarray, bound_th: float = BOUND_TH) -> float:
    """Boundary F-measure of one object: two (H, W) boolean masks (spec §6)."""
    gt_mask, pred_mask = _as_bool_pair(gt_mask, pred_mask, "boundary_f")
    radius = tolerance_radius(*gt_mask.shape, bound_th=bound_th)
    gt_points = LabelBoundaries(gt_mask.astype(np.uint8)).points(1)
    pred_points = LabelBoundaries(pred_mask.astype(np.uint8)).points(1)
    return _f_from_points(gt_points, pred_points, radius)


# --------------------------------------------------------------------------------------
# all objects of a frame at once (the fast path)
# --------------------------------------------------------------------------------------

class LabelBoundaries:
    """Boundary pixels b(label == k) of every object k of one (H, W) label map, found in one pass.

    A pixel lies on b(M_k) exactly when one of its valid neighbours (right, below, below-right,
    as in :func:`boundary_map`) has a different label and k is its own label or that neighbour's.
    So we keep the pixels whose label differs from a valid neighbour, with their own and their
    three neighbours' labels (a missing neighbour repeats the pixel's own label, which never
    differs), and :meth:`points` selects the ones that involve k.
    """

    def __init__(self, labels: np.ndarray):
        labels = np.ascontiguousarray(labels)
        if labels.ndim != 2 or labels.size == 0:
            raise ValueError(f"LabelBoundaries: expected a non-empty (H, W) label map, got shape {labels.shape}")
        height, width = labels.shape
        self.shape = (height, width)
        flat = labels.ravel()                                              # (H*W,)
        # on the flat array "right" and "below-right" wrap from the last column into the next
        # row; those comparisons are invalid and cleared before "below" (valid there) is added
        differs = np.zeros(flat.size, dtype=bool)                          # (H*W,)
        np.not_equal(flat[:-1], flat[1:], out=differs[:-1])                # right
        differs[:-width - 1] |= flat[:-width - 1] != flat[width + 1:]      # below-right
        differs.reshape(height, width)[:, -1] = False
        differs[:-width] |= flat[:-width] != flat[width:]                  # below
        index = np.flatnonzero(differs)                                    # (n,) flat pixel indices
        self.ys, self.xs = np.divmod(index, width)                         # (n,), (n,)

        padded = np.concatenate([flat, np.zeros(width + 1, flat.dtype)])   # so index + W + 1 stays inside
        own = padded[index]
        has_right = self.xs < width - 1
        has_below = self.ys < height - 1
        right = np.where(has_right, padded[index + 1], own)
        below = np.where(has_below, padded[index + width], own)
        below_right = np.where(has_right & has_below, padded[index + width + 1], own)
        self.labels = np.stack([own, right, below, below_right])           # (4, n)

    def points(self, object_id: int) -> tuple[np.ndarray, np.ndarray]:
        """(ys, xs) of the boundary pixels of ``labels == object_id``, each (n_k,) int64."""
        on_boundary = (self.labels == object_id).any(axis=0)               # (n,)
        return self.ys[on_boundary], self.xs[on_boundary]


def count_within_radius(query: tuple[np.ndarray, np.ndarray], target: tuple[np.ndarray, np.ndarray],
                        radius: int) -> int:
    """How many query points (ys, xs) have a target point within Euclidean distance <= radius.

    Equals ``sum(query_map & cv2.dilate(target_map, disk(radius)))`` of the official code.
    """
    return count_pairs_within_radius([(query, target)], radius)[0]


def count_pairs_within_radius(pairs: list[tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]],
                              radius: int) -> list[int]:
    """:func:`count_within_radius` for several (query, target) pairs at once.

    No full-frame images: the target points of pair c go into channel c of a small canvas over
    the joint bounding box of all points (padded by the radius, so no look-up leaves it), and one
    multi-channel summed-area table (``cv2.integral``) answers "any target point in this
    rectangle?" with four look-ups, for each rectangle of :func:`disk_rectangles`. The largest
    rectangle is tried first; only the points it leaves unmatched try the others. F uses two
    pairs, (b(P), b(G)) and (b(G), b(P)), so both directions share one table.
    """
    counts = [0] * len(pairs)
    active = [i for i, (query, target) in enumerate(pairs) if len(query[0]) and len(target[0])]
    if not active:
        return counts
    channels = len(active)
    all_y = np.concatenate([axis for i in active for axis in (pairs[i][0][0], pairs[i][1][0])])
    all_x = np.concatenate([axis for i in active for axis in (pairs[i][0][1], pairs[i][1][1])])
    top, bottom = int(all_y.min()) - radius, int(all_y.max()) + radius + 1
    left, right = int(all_x.min()) - radius, int(all_x.max()) + radius + 1

    canvas = np.zeros((bottom - top, right - left, channels), dtype=np.uint8)   # (h, w, C) target points
    for channel, i in enumerate(active):
        target_y, target_x = pairs[i][1]
        canvas[target_y - top, target_x - left, channel] = 1
    table = cv2.integral(canvas).ravel()              # (h+1)*(w+1)*C: table[y, x, c] = sum canvas[:y, :x, c]
    row_step = (right - left + 1) * channels          # flat distance between table rows
    column_step = channels

    # each query's position in the table, in its pair's channel
    base = np.concatenate([(pairs[i][0][0] - top) * row_step + (pairs[i][0][1] - left) * column_step + channel
                           for channel, i in enumerate(active)])                  # (n,)
    owner = np.concatenate([np.full(len(pairs[i][0][0]), channel) for channel, i in enumerate(active)])  # (n,)

    half_h, half_w = _rectangles_largest_first(radius)                  # (R,), (R,)
    # rectangle rows y-h .. y+h, columns x-w .. x+w -> its sum = (A + B) - (C + D) at these corners
    plus_a = (half_h + 1) * row_step + (half_w + 1) * column_step       # bottom-right
    plus_b = -half_h * row_step - half_w * column_step                  # top-left
    minus_c = -half_h * row_step + (half_w + 1) * column_step           # top-right
    minus_d = (half_h + 1) * row_step - half_w * column_step            # bottom-left

    def any_target_inside(positions: np.ndarray, rectangles: slice) -> np.ndarray:   # (m,) bool
        at = positions[:, None]
        sums = (table[at + plus_a[rectangles]] + table[at + plus_b[rectangles]]
                - table[at + minus_c[rectangles]] - table[at + minus_d[rectangles]])   # (m, R')
        return sums.max(axis=1) > 0

    matched = any_target_inside(base, slice(0, 1))                      # (n,) the largest rectangle
    if len(half_h) > 1 and not matched.all():
        unmatched = np.flatnonzero(~matched)
        matched[unmatched] = any_target_inside(base[unmatched], slice(1, None))
    per_channel = np.bincount(owner[matched], minlength=channels)
    for channel, i in enumerate(active):
        counts[i] = int(per_channel[channel])
    return counts


def frame_scores(gt_labels: np.ndarray, pred_labels: np.ndarray, object_ids, radius: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """J and F of every object of one frame.

    Args:
        gt_labels: (H, W) integer ground-truth ids (void 255 already set to 0 by the caller).
        pred_labels: (H, W) integer predicted ids.
        object_ids: the ids to score, in order (usually 1..N); ids >= 1.
        radius: boundary tolerance in pixels (:func:`tolerance_radius` of the *full* frame size).

    Returns:
        (J, F), each a (len(object_ids),) float64 array.

    Everything outside the joint bounding box of the non-zero pixels of both maps is background
    in both, so the work is done on that box grown by one pixel (the boundary of an object's top
    and left sides lies on the background just outside it), clamped to the frame. Inside the
    crop its edges are image edges only where they are the frame's: elsewhere the extra row or
    column is background with background beyond it, so it has no boundary either way.
    """
    gt_labels = _as_label_map(gt_labels, "gt_labels")
    pred_labels = _as_label_map(pred_labels, "pred_labels")
    if gt_labels.shape != pred_labels.shape:
        raise ValueError(f"frame_scores: ground truth is {gt_labels.shape} but prediction is {pred_labels.shape}")
    object_ids = [int(k) for k in object_ids]
    if any(k < 1 for k in object_ids):
        raise ValueError(f"frame_scores: object ids must be >= 1 (0 is background), got {object_ids}")
    j_scores = np.ones(len(object_ids))
    f_scores = np.ones(len(object_ids))
    box = _foreground_box(gt_labels, pred_labels)
    if box is None or not object_ids:       # both maps empty: every object is "both empty", J = F = 1
        return j_scores, f_scores
    gt_crop, pred_crop = gt_labels[box], pred_labels[box]
    gt_boundaries = LabelBoundaries(gt_crop)
    pred_boundaries = LabelBoundaries(pred_crop)
    for index, object_id in enumerate(object_ids):
        gt_mask = gt_crop == object_id                                  # (h, w)
        pred_mask = pred_crop == object_id                              # (h, w)
        intersection = int(np.count_nonzero(gt_mask & pred_mask))
        union = int(np.count_nonzero(gt_mask)) + int(np.count_nonzero(pred_mask)) - intersection
        j_scores[index] = 1.0 if union == 0 else intersection / union
        f_scores[index] = _f_from_points(gt_boundaries.points(object_id), pred_boundaries.points(object_id), radius)
    return j_scores, f_scores


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------

def _f_from_points(gt_points, pred_points, radius: int) -> float:
    n_gt, n_pred = len(gt_points[0]), len(pred_points[0])
    if n_gt == 0 or n_pred == 0:          # the special cases need no matching
        return f_from_counts(n_pred, n_gt, 0, 0)
    pred_matched, gt_matched = count_pairs_within_radius([(pred_points, gt_points), (gt_points, pred_points)], radius)
    return f_from_counts(n_pred, n_gt, pred_matched, gt_matched)


@functools.lru_cache(maxsize=None)
def _rectangles_largest_first(radius: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`disk_rectangles` as (half_heights, half_widths) arrays, the largest area first."""
    rectangles = sorted(disk_rectangles(radius), key=lambda hw: -(2 * hw[0] + 1) * (2 * hw[1] + 1))
    half_h = np.array([h for h, _ in rectangles], dtype=np.int64)
    half_w = np.array([w for _, w in rectangles], dtype=np.int64)
    half_h.setflags(write=False)
    half_w.setflags(write=False)
    return half_h, half_w


def _foreground_box(*label_maps: np.ndarray) -> tuple[slice, slice] | None:
    """Joint bounding box of the non-zero pixels of uint8 maps, grown by 1 px and clamped; None if all empty."""
    height, width = label_maps[0].shape
    boxes = [cv2.boundingRect(m) for m in label_maps]                  # (x, y, w, h); w = 0 when empty
    boxes = [b for b in boxes if b[2] > 0]
    if not boxes:
        return None
    top = max(min(y for _, y, _, _ in boxes) - 1, 0)
    left = max(min(x for x, _, _, _ in boxes) - 1, 0)
    bottom = min(max(y + h for _, y, _, h in boxes) + 1, height)
    right = min(max(x + w for x, _, w, _ in boxes) + 1, width)
    return slice(top, bottom), slice(left, right)


def _as_label_map(labels, name: str) -> np.ndarray:
    """(H, W) integer ids as contiguous uint8 (DAVIS ids are 0..255)."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"frame_scores: {name} must be an (H, W) label map, got shape {labels.shape}")
    if labels.dtype != np.uint8:
        if labels.dtype == np.bool_ or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"frame_scores: {name} must hold integer object ids, got dtype {labels.dtype}")
        if labels.size and (labels.min() < 0 or labels.max() > 255):
            raise ValueError(f"frame_scores: {name} ids must be in 0..255, got {labels.min()}..{labels.max()}")
        labels = labels.astype(np.uint8)
    return np.ascontiguousarray(labels)


def _as_bool_pair(gt_mask, pred_mask, where: str) -> tuple[np.ndarray, np.ndarray]:
    gt_mask = np.asarray(gt_mask).astype(bool)
    pred_mask = np.asarray(pred_mask).astype(bool)
    if gt_mask.ndim != 2 or gt_mask.shape != pred_mask.shape:
        raise ValueError(f"{where}: expected two (H, W) masks of the same size, got {gt_mask.shape} and {pred_mask.shape}")
    return gt_mask, pred_mask
