"""Per-frame DAVIS J and F (isvos_lite.eval.metrics) against hand-computed answers and a plain
reference written here from the official definition (docs/DAVIS_METRIC.md §5, §6):
full-frame boundary maps and cv2.dilate with a disk, per object, as the official code does."""

import cv2
import numpy as np
import pytest

from isvos_lite.eval import metrics
from isvos_lite.eval.metrics import (LabelBoundaries, boundary_f, boundary_map, count_within_radius, disk,
                                     disk_rectangles, f_from_counts, frame_scores, jaccard, tolerance_radius)


# --------------------------------------------------------------------------------------
# the plain reference (independent of the package's fast path)
# --------------------------------------------------------------------------------------

def ref_boundary(mask):
    mask = mask.astype(bool)
    east, south, south_east = np.zeros_like(mask), np.zeros_like(mask), np.zeros_like(mask)
    east[:, :-1] = mask[:, 1:]
    south[:-1, :] = mask[1:, :]
    south_east[:-1, :-1] = mask[1:, 1:]
    b = mask ^ east | mask ^ south | mask ^ south_east
    b[-1, :] = mask[-1, :] ^ east[-1, :]
    b[:, -1] = mask[:, -1] ^ south[:, -1]
    b[-1, -1] = False
    return b


def ref_f(pred, gt, bound_th=0.008):
    radius = bound_th if bound_th >= 1 else np.ceil(bound_th * np.linalg.norm(pred.shape))
    axis = np.arange(-radius, radius + 1)
    xx, yy = np.meshgrid(axis, axis)
    kernel = ((xx ** 2 + yy ** 2) <= radius ** 2).astype(np.uint8)      # skimage.morphology.disk
    pred_b, gt_b = ref_boundary(pred), ref_boundary(gt)
    pred_dil = cv2.dilate(pred_b.astype(np.uint8), kernel)
    gt_dil = cv2.dilate(gt_b.astype(np.uint8), kernel)
    n_pred, n_gt = np.sum(pred_b), np.sum(gt_b)
    if n_pred == 0 and n_gt > 0:
        precision, recall = 1, 0
    elif n_pred > 0 and n_gt == 0:
        precision, recall = 0, 1
    elif n_pred == 0 and n_gt == 0:
        precision, recall = 1, 1
    else:
        precision = np.sum(pred_b * gt_dil) / float(n_pred)
        recall = np.sum(gt_b * pred_dil) / float(n_gt)
    return 0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def ref_j(pred, gt):
    pred, gt = pred.astype(bool), gt.astype(bool)
    union = np.sum(pred | gt)
    return 1 if np.isclose(union, 0) else np.sum(pred & gt) / union


def random_labels(rng, height, width, n_ids, kind):
    """Label maps of several shapes: blocky noise, blobs away from the border, border-touching blobs."""
    labels = np.zeros((height, width), np.uint8)
    if kind == "blocky":
        cells = rng.integers(0, n_ids + 1, size=(max(height // 7, 1), max(width // 7, 1))).astype(np.uint8)
        labels = cv2.resize(cells, (width, height), interpolation=cv2.INTER_NEAREST)
        speckle = rng.random((height, width)) < 0.01
        labels[speckle] = rng.integers(0, n_ids + 1, size=int(speckle.sum()))
        return labels
    for object_id in range(1, n_ids + 1):
        radius = max(1, int(rng.uniform(0.03, 0.25) * min(height, width)))
        if kind == "border":
            centre = (int(rng.choice([0, width - 1, rng.integers(0, width)])), int(rng.choice([0, height - 1])))
        else:
            centre = (int(rng.integers(radius, max(radius + 1, width - radius))),
                      int(rng.integers(radius, max(radius + 1, height - radius))))
        axes = (radius, max(1, int(radius * rng.uniform(0.4, 1.0))))
        cv2.ellipse(labels, centre, axes, float(rng.uniform(0, 180)), 0, 360, object_id, -1)
    return labels


def perturb(rng, labels):
    kind = rng.integers(0, 4)
    if kind == 0:
        return np.roll(labels, (int(rng.integers(-9, 10)), int(rng.integers(-9, 10))), axis=(0, 1))
    if kind == 1:
        return cv2.dilate(labels, np.ones((3, 3), np.uint8))
    if kind == 2:
        out = labels.copy()
        out[rng.random(labels.shape) < 0.02] = 0
        return out
    return np.zeros_like(labels)


# --------------------------------------------------------------------------------------
# hand-computed answers
# --------------------------------------------------------------------------------------

def square(shape, rows, cols):
    mask = np.zeros(shape, bool)
    mask[rows[0]:rows[1] + 1, cols[0]:cols[1] + 1] = True
    return mask


def test_boundary_map_of_a_square_by_hand():
    # 3x3 square at rows 1..3, cols 1..3 of a 6x8 frame. Its boundary (spec §6.1) is the
    # background row above and column to the left (7 px: (0,0..3), (1..3,0)) plus its own right
    # column and bottom row (5 px: (1..3,3), (3,1..2)): 12 px = 4 * side.
    b = boundary_map(square((6, 8), (1, 3), (1, 3)))
    expected = {(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (2, 0), (3, 0), (1, 3), (2, 3), (3, 1), (3, 2), (3, 3)}
    assert set(zip(*np.nonzero(b))) == expected


def test_boundary_map_special_shapes():
    # a single interior pixel gives the 2x2 block up-left of and including it
    single = np.zeros((5, 6), bool)
    single[2, 3] = True
    assert set(zip(*np.nonzero(boundary_map(single)))) == {(1, 2), (1, 3), (2, 2), (2, 3)}
    # the image border is never an edge: a full-frame mask has no boundary ...
    assert not boundary_map(np.ones((5, 6), bool)).any()
    # the bottom-right pixel alone is not a boundary pixel itself, but its up-left neighbours are
    # (the official _seg2bmap gives exactly these three; the spec's remark that such a mask has
    # no boundary is contradicted by running its code)
    corner = np.zeros((5, 6), bool)
    corner[-1, -1] = True
    assert set(zip(*np.nonzero(boundary_map(corner)))) == {(3, 4), (3, 5), (4, 4)}
    assert np.array_equal(boundary_map(corner), ref_boundary(corner))
    # the top-left pixel alone is its own (single) boundary pixel: its right neighbour differs
    top_left = np.zeros((5, 6), bool)
    top_left[0, 0] = True
    assert set(zip(*np.nonzero(boundary_map(top_left)))) == {(0, 0)}


def test_j_and_f_of_a_shifted_square_by_hand():
    # 6x8 frame: r = ceil(0.008 * sqrt(36 + 64)) = ceil(0.08) = 1, so the disk is the pixel and its 4 neighbours.
    # G = 3x3 square at cols 1..3, P = the same square at cols 3..5 (shifted right by 2).
    # J: overlap = column 3 = 3 px, union = 9 + 9 - 3 = 15 -> 3/15 = 0.2.
    # b(G) = {(0,0..3), (1..3,0), (1..3,3), (3,1..2)}, b(P) = b(G) shifted right by 2.
    # precision: b(P) pixels within 1 px of b(G): (0,2) (0,3) (0,4) (1,2) (2,2) (3,2) (3,3) (3,4) = 8 of 12;
    #   unmatched (0,5) (1,5) (2,5) (3,5).
    # recall: b(G) pixels within 1 px of b(P): (0,1) (0,2) (0,3) (1,3) (2,3) (3,1) (3,2) (3,3) = 8 of 12;
    #   unmatched (0,0) (1,0) (2,0) (3,0).
    # F = 2 * (2/3) * (2/3) / (4/3) = 2/3.
    gt = square((6, 8), (1, 3), (1, 3))
    pred = square((6, 8), (1, 3), (3, 5))
    assert tolerance_radius(6, 8) == 1
    assert jaccard(gt, pred) == pytest.approx(0.2, abs=1e-15)
    assert boundary_f(gt, pred) == pytest.approx(2 / 3, abs=1e-15)
    assert count_within_radius(np.nonzero(boundary_map(pred)), np.nonzero(boundary_map(gt)), 1) == 8
    assert count_within_radius(np.nonzero(boundary_map(gt)), np.nonzero(boundary_map(pred)), 1) == 8
    # the same frame through the multi-object path, with the square as object 2 and a stray id 5
    gt_labels = gt.astype(np.uint8) * 2
    pred_labels = pred.astype(np.uint8) * 2
    gt_labels[5, 7] = 5
    j, f = frame_scores(gt_labels, pred_labels, [1, 2], radius=1)
    assert j.tolist() == [1.0, pytest.approx(0.2, abs=1e-15)]      # object 1: both empty -> 1
    assert f.tolist() == [1.0, pytest.approx(2 / 3, abs=1e-15)]


def test_special_cases_of_j_and_f():
    empty = np.zeros((6, 8), bool)
    full = np.ones((6, 8), bool)
    blob = square((6, 8), (2, 3), (2, 4))
    # both empty: J = F = 1 (an object that is absent and predicted absent)
    assert (jaccard(empty, empty), boundary_f(empty, empty)) == (1.0, 1.0)
    # full-frame GT vs an empty prediction: J = 0, but neither has a boundary pixel, so F = 1
    assert (jaccard(full, empty), boundary_f(full, empty)) == (0.0, 1.0)
    # GT empty, prediction with a boundary: precision 0, recall 1 -> F = 0
    assert (jaccard(empty, blob), boundary_f(empty, blob)) == (0.0, 0.0)
    # GT with a boundary, prediction empty: precision 1, recall 0 -> F = 0
    assert (jaccard(blob, empty), boundary_f(blob, empty)) == (0.0, 0.0)
    # GT = the bottom-right pixel only: it has 3 boundary pixels (see above), so an empty prediction gets F = 0
    corner = np.zeros((6, 8), bool)
    corner[-1, -1] = True
    assert (jaccard(corner, empty), boundary_f(corner, empty)) == (0.0, 0.0)
    assert boundary_f(corner, empty) == ref_f(empty, corner)
    # a full-frame prediction against a full-frame GT: identical, J = F = 1
    assert (jaccard(full, full), boundary_f(full, full)) == (1.0, 1.0)
    # identical masks
    assert (jaccard(blob, blob), boundary_f(blob, blob)) == (1.0, 1.0)


def test_f_from_counts_table():
    assert f_from_counts(0, 0, 0, 0) == 1.0
    assert f_from_counts(0, 5, 0, 0) == 0.0
    assert f_from_counts(5, 0, 0, 0) == 0.0
    assert f_from_counts(4, 6, 0, 0) == 0.0                  # P + R = 0
    assert f_from_counts(3, 3, 3, 1) == 0.5                  # P = 1, R = 1/3 -> exactly 0.5 (spec §7)


# --------------------------------------------------------------------------------------
# the tolerance disk
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("size, radius", [((480, 854), 8), ((480, 910), 9), ((480, 1152), 10),
                                          ((361, 643), 6), ((720, 1280), 12), ((1080, 1920), 18)])
def test_tolerance_radius_table(size, radius):
    assert tolerance_radius(*size) == radius


def test_tolerance_radius_in_pixels_and_bad_values():
    assert tolerance_radius(480, 854, bound_th=3) == 3
    with pytest.raises(ValueError, match="whole"):
        tolerance_radius(480, 854, bound_th=2.5)
    with pytest.raises(ValueError):
        tolerance_radius(0, 854)


@pytest.mark.parametrize("radius", list(range(0, 21)))
def test_disk_rectangles_cover_exactly_the_disk(radius):
    union = np.zeros((2 * radius + 1, 2 * radius + 1), np.uint8)
    for half_h, half_w in disk_rectangles(radius):
        union[radius - half_h:radius + half_h + 1, radius - half_w:radius + half_w + 1] = 1
    assert np.array_equal(union, disk(radius))
    # disk(r) is the inclusive Euclidean disk
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    assert np.array_equal(disk(radius), (yy ** 2 + xx ** 2 <= radius ** 2).astype(np.uint8))


def test_disk_rectangles_for_r8():
    assert sorted(disk_rectangles(8)) == [(0, 8), (3, 7), (5, 6), (6, 5), (7, 3), (8, 0)]


def test_match_distance_is_inclusive_and_euclidean():
    origin = (np.array([20]), np.array([20]))
    for (dy, dx), inside in [((0, 8), True), ((8, 0), True), ((-8, 0), True), ((0, 9), False),
                             ((5, 6), True), ((6, 6), False), ((3, 7), True), ((4, 7), False), ((-7, -4), False),
                             ((-6, -4), True), ((4, 6), True)]:
        target = (np.array([20 + dy]), np.array([20 + dx]))
        assert count_within_radius(origin, target, 8) == int(inside), (dy, dx)


def test_radius_depends_on_the_frame_size():
    # a 100-px-wide slab and the same slab 9 px to the right: their vertical boundaries are 9 px apart.
    # At 480x910 (r = 9) every boundary pixel is matched; at 480x854 (r = 8) the vertical ones are not.
    for width, expected_radius in ((854, 8), (910, 9)):
        gt = np.zeros((480, width), bool)
        gt[100:380, 100:200] = True
        pred = np.roll(gt, 9, axis=1)
        assert tolerance_radius(480, width) == expected_radius
        f = boundary_f(gt, pred)
        assert f == ref_f(pred, gt)
        if expected_radius == 9:
            assert f == 1.0
        else:
            assert f < 0.9


# --------------------------------------------------------------------------------------
# the fast path equals the plain reference, bit for bit
# --------------------------------------------------------------------------------------

def test_label_boundaries_match_per_object_boundary_maps():
    rng = np.random.default_rng(1)
    for trial in range(30):
        height, width = [(6, 8), (1, 7), (7, 1), (23, 41), (2, 2)][trial % 5]
        labels = random_labels(rng, height, width, 4, ["blocky", "blobs", "border"][trial % 3])
        boundaries = LabelBoundaries(labels)
        for object_id in range(0, 6):
            ys, xs = boundaries.points(object_id)
            expected = np.nonzero(ref_boundary(labels == object_id))
            assert set(zip(ys.tolist(), xs.tolist())) == set(zip(*[e.tolist() for e in expected]))
            assert np.array_equal(boundary_map(labels == object_id), ref_boundary(labels == object_id))


@pytest.mark.parametrize("size", [(6, 8), (1, 9), (9, 1), (37, 61), (120, 213), (480, 854), (480, 910), (480, 1152)])
def test_frame_scores_equal_the_reference(size):
    rng = np.random.default_rng(sum(size))
    trials = 6 if size[0] >= 480 else 25
    for trial in range(trials):
        gt = random_labels(rng, *size, n_ids=3, kind=["blocky", "blobs", "border"][trial % 3])
        pred = perturb(rng, gt) if trial % 4 else random_labels(rng, *size, n_ids=3, kind="blobs")
        radius = tolerance_radius(*size)
        object_ids = [1, 2, 3, 4]                                       # 4 is absent from both
        j, f = frame_scores(gt, pred, object_ids, radius)
        for index, object_id in enumerate(object_ids):
            # exact equality: same integer counts, same floating-point operations
            assert j[index] == ref_j(pred == object_id, gt == object_id), (trial, object_id)
            assert f[index] == ref_f(pred == object_id, gt == object_id), (trial, object_id)


def test_single_object_functions_equal_the_reference():
    rng = np.random.default_rng(7)
    for trial in range(20):
        gt = random_labels(rng, 50, 70, 1, ["blobs", "border"][trial % 2]) > 0
        pred = perturb(rng, gt.astype(np.uint8)) > 0
        assert jaccard(gt, pred) == ref_j(pred, gt)
        assert boundary_f(gt, pred) == ref_f(pred, gt)
        assert boundary_f(gt, pred, bound_th=3) == ref_f(pred, gt, bound_th=3)


def test_frame_scores_input_checks():
    with pytest.raises(ValueError, match="prediction"):
        frame_scores(np.zeros((4, 5), np.uint8), np.zeros((5, 4), np.uint8), [1], 1)
    with pytest.raises(ValueError, match=">= 1"):
        frame_scores(np.zeros((4, 5), np.uint8), np.zeros((4, 5), np.uint8), [0], 1)
    with pytest.raises(ValueError, match="integer"):
        frame_scores(np.zeros((4, 5), np.float32), np.zeros((4, 5), np.uint8), [1], 1)
    # int64 ids are accepted and give the same numbers as uint8
    gt = np.zeros((6, 8), np.int64)
    gt[1:4, 1:4] = 2
    pred = np.roll(gt, 2, axis=1)
    j64, f64 = frame_scores(gt, pred, [2], 1)
    j8, f8 = frame_scores(gt.astype(np.uint8), pred.astype(np.uint8), [2], 1)
    assert (j64.tolist(), f64.tolist()) == (j8.tolist(), f8.tolist())


def test_module_documents_the_paper():
    assert "§4.1" in metrics.__doc__


def test_pairs_share_one_table_and_equal_single_counts():
    rng = np.random.default_rng(11)
    for trial in range(20):
        sets = [(rng.integers(0, 40, size=n), rng.integers(0, 60, size=n)) for n in rng.integers(0, 30, size=6)]
        pairs = [(sets[0], sets[1]), (sets[1], sets[0]), (sets[2], sets[3]), (sets[4], sets[5])]
        radius = int(rng.integers(0, 6))
        expected = []
        for query, target in pairs:
            # brute force: any target within Euclidean distance <= radius
            if len(query[0]) == 0 or len(target[0]) == 0:
                expected.append(0)
                continue
            d2 = (query[0][:, None] - target[0][None]) ** 2 + (query[1][:, None] - target[1][None]) ** 2
            expected.append(int(np.count_nonzero((d2 <= radius * radius).any(axis=1))))
        assert metrics.count_pairs_within_radius(pairs, radius) == expected
        assert [count_within_radius(q, t, radius) for q, t in pairs] == expected
