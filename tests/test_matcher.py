"""Hungarian matcher: equals brute-force assignment, handles zero targets, pairwise costs match per-pair formulas."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from isvos_lite.train.matcher import HungarianMatcher, pairwise_dice, pairwise_sigmoid_bce
from isvos_lite.train.point_sampling import pixel_centre_coords



def per_pair_cost(class_logits, mask_logits, labels, target_masks, q, m, weights=(2.0, 5.0, 5.0)):
    """Mask2Former's matching cost of query q and target m, written out for one pair on whole pixel grids."""
    class_cost = -class_logits[q].softmax(-1)[labels[m]]
    logit = mask_logits[q].flatten()
    target = target_masks[m].flatten()
    bce = F.binary_cross_entropy_with_logits(logit, target)
    prob = logit.sigmoid()
    dice = 1 - (2 * (prob * target).sum() + 1) / (prob.sum() + target.sum() + 1)
    return weights[0] * class_cost + weights[1] * bce + weights[2] * dice


def brute_force_assignment(cost_of, num_queries, num_targets):
    """The minimum total cost over every injective assignment of targets to queries (or queries to targets)."""
    best_cost, best = float("inf"), None
    if num_targets <= num_queries:
        for chosen_queries in itertools.permutations(range(num_queries), num_targets):
            total = sum(cost_of(q, m) for m, q in enumerate(chosen_queries))
            if total < best_cost:
                best_cost, best = total, sorted(zip(chosen_queries, range(num_targets)))
    else:
        for chosen_targets in itertools.permutations(range(num_targets), num_queries):
            total = sum(cost_of(q, m) for q, m in enumerate(chosen_targets))
            if total < best_cost:
                best_cost, best = total, sorted(zip(range(num_queries), chosen_targets))
    return best_cost, best


@pytest.mark.parametrize("seed", range(12))
def test_matcher_equals_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    num_queries = int(torch.randint(1, 6, (1,), generator=g))
    num_targets = int(torch.randint(1, 5, (1,), generator=g))
    num_classes, H, W = 3, 6, 7
    class_logits = torch.randn(num_queries, num_classes + 1, generator=g) * 2
    mask_logits = torch.randn(num_queries, H, W, generator=g) * 3
    labels = torch.randint(0, num_classes, (num_targets,), generator=g)
    target_masks = (torch.rand(num_targets, H, W, generator=g) > 0.5).float()

    matcher = HungarianMatcher()
    # points at the pixel centres of the (equal-size) maps read every pixel exactly once
    cost = matcher.cost_matrix(class_logits, mask_logits, labels, target_masks, pixel_centre_coords(H, W))
    pred_index, target_index = matcher.assign(cost)

    def cost_of(q, m):
        return float(per_pair_cost(class_logits, mask_logits, labels, target_masks, q, m))

    best_cost, best = brute_force_assignment(cost_of, num_queries, num_targets)
    found_cost = sum(cost_of(int(q), int(m)) for q, m in zip(pred_index, target_index))
    assert len(pred_index) == min(num_queries, num_targets)
    assert len(set(pred_index.tolist())) == len(pred_index) and len(set(target_index.tolist())) == len(target_index)
    assert found_cost == pytest.approx(best_cost, abs=1e-4)
    # with continuous random costs the optimum is unique
    assert sorted(zip(pred_index.tolist(), target_index.tolist())) == best


def test_pairwise_costs_equal_per_pair_formulas():
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(4, 50, generator=g)
    target = torch.rand(3, 50, generator=g)
    bce = pairwise_sigmoid_bce(pred, target)
    dice = pairwise_dice(pred, target)
    for q in range(4):
        for m in range(3):
            expected_bce = F.binary_cross_entropy_with_logits(pred[q], target[m])
            p = pred[q].sigmoid()
            expected_dice = 1 - (2 * (p * target[m]).sum() + 1) / (p.sum() + target[m].sum() + 1)
            torch.testing.assert_close(bce[q, m], expected_bce)
            torch.testing.assert_close(dice[q, m], expected_dice)


def test_matcher_finds_the_obvious_assignment_with_random_points():
    """Target m is an exact copy of query perm[m]'s mask and class: the matcher must recover perm."""
    torch.manual_seed(0)
    B, N, K, H, W = 2, 5, 3, 16, 16
    masks = torch.zeros(B, N, H, W)
    for q in range(N):  # query q covers a distinct horizontal band
        masks[:, q, 3 * q:3 * q + 3] = 1.0
    pred_masks = (masks * 2 - 1) * 12                                        # confident logits
    labels_of_query = torch.tensor([0, 1, 2, 0, 1])
    pred_logits = F.one_hot(labels_of_query, K + 1).float()[None].repeat(B, 1, 1) * 10
    perms = [torch.tensor([3, 0, 4]), torch.tensor([1, 2])]
    targets = [{"labels": labels_of_query[p], "masks": masks[b, p]} for b, p in enumerate(perms)]
    # full-resolution targets, stride-4-like predictions: the matcher samples both in normalised coordinates
    targets = [{"labels": t["labels"], "masks": F.interpolate(t["masks"][None], scale_factor=4)[0]} for t in targets]
    matches = HungarianMatcher(num_points=500)({"pred_logits": pred_logits, "pred_masks": pred_masks}, targets)
    for (pred_index, target_index), perm in zip(matches, perms):
        assert pred_index[target_index.argsort()].tolist() == perm.tolist()


def test_matcher_handles_images_without_targets():
    outputs = {"pred_logits": torch.randn(2, 4, 3), "pred_masks": torch.randn(2, 4, 8, 8)}
    targets = [{"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 32, 32)},
               {"labels": torch.tensor([1]), "masks": torch.ones(1, 32, 32)}]
    matches = HungarianMatcher(num_points=64)(outputs, targets)
    assert matches[0][0].numel() == 0 and matches[0][1].numel() == 0
    assert matches[1][0].numel() == 1 and matches[1][1].tolist() == [0]


def test_matcher_rejects_non_finite_costs():
    cost = torch.tensor([[1.0, float("nan")], [0.0, 2.0]])
    with pytest.raises(ValueError, match="NaN or inf"):
        HungarianMatcher.assign(cost)
