"""VOS loss (bootstrapped CE + dice), point sampling and the IS set criterion: known answers and invariants."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from isvos_lite.train.criterion import SetCriterion
from isvos_lite.train.losses import VOSLoss, bootstrap_fraction, object_dice_loss
from isvos_lite.train.point_sampling import pixel_centre_coords, point_sample, sample_uncertain_points



# --- point sampling ------------------------------------------------------------------------------

def test_point_sample_reads_pixels_exactly_at_their_centres():
    maps = torch.randn(2, 3, 5, 7)
    coords = pixel_centre_coords(5, 7)[None].repeat(2, 1, 1)               # (2, 35, 2)
    torch.testing.assert_close(point_sample(maps, coords), maps.flatten(2))


def test_point_sample_is_bilinear_between_centres_and_constant_at_the_border():
    maps = torch.tensor([[[[0.0, 4.0]]]])                                  # (1, 1, 1, 2): centres at x = 0.25, 0.75
    coords = torch.tensor([[[0.5, 0.5], [0.375, 0.5], [0.0, 0.5], [1.0, 0.5]]])
    torch.testing.assert_close(point_sample(maps, coords)[0, 0], torch.tensor([2.0, 1.0, 0.0, 4.0]))


def test_uncertain_points_concentrate_on_the_decision_boundary():
    torch.manual_seed(0)
    W = 64
    x_centres = (torch.arange(W) + 0.5) / W
    logits = (20 * (x_centres - 0.5)).view(1, 1, 1, W).expand(2, 1, 32, W).contiguous()  # boundary at x = 0.5
    coords = sample_uncertain_points(logits, num_points=400, oversample_ratio=3.0, importance_ratio=0.75)
    assert coords.shape == (2, 400, 2)
    assert coords.min() >= 0 and coords.max() <= 1
    chosen, fresh = coords[:, :300], coords[:, 300:]
    # the 300 most uncertain of 1,200 uniform candidates lie within about 1/8 of the boundary
    assert (chosen[..., 0] - 0.5).abs().max() < 0.2
    # the random quarter is spread over the whole image
    assert (fresh[..., 0] - 0.5).abs().max() > 0.3


# --- the bootstrapped cross-entropy schedule ----------------------------------------------------

def test_bootstrap_fraction_schedule():
    assert bootstrap_fraction(0, 20_000, 70_000) == 1.0
    assert bootstrap_fraction(19_999, 20_000, 70_000) == 1.0
    assert bootstrap_fraction(20_000, 20_000, 70_000) == pytest.approx(1.0)
    assert bootstrap_fraction(45_000, 20_000, 70_000) == pytest.approx(0.575)
    assert bootstrap_fraction(70_000, 20_000, 70_000) == pytest.approx(0.15)
    assert bootstrap_fraction(10**6, 20_000, 70_000) == pytest.approx(0.15)
    assert bootstrap_fraction(5, 5, 5) == pytest.approx(0.15)


def random_clip(B=2, T=2, O=2, H=8, W=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, O + 1, H, W, generator=g) * 2
    labels = torch.randint(0, O + 1, (B, T, H, W), generator=g)
    return logits, labels, torch.ones(B, O)


def test_bootstrapped_ce_is_plain_ce_before_the_start():
    logits, labels, selector = random_clip()
    out = VOSLoss(start_step=100, end_step=200)(logits, labels, selector, step=99)
    expected = sum(F.cross_entropy(logits[:, t], labels[:, t]) for t in range(logits.shape[1]))  # summed over frames
    torch.testing.assert_close(out["loss_ce"], expected)
    assert out["p"] == 1.0


def test_bootstrapped_ce_is_the_mean_of_the_hardest_15_percent_after_the_end():
    logits, labels, selector = random_clip(B=2, T=3, H=10, W=10)
    out = VOSLoss(start_step=100, end_step=200)(logits, labels, selector, step=500)
    expected = 0.0
    for t in range(3):
        per_sample = []
        for b in range(2):
            pixel_loss = F.cross_entropy(logits[b, t][None], labels[b, t][None], reduction="none").flatten()
            hardest = pixel_loss.sort(descending=True).values[:15]                 # 15 % of 100 pixels
            per_sample.append(hardest.mean())
        expected = expected + torch.stack(per_sample).mean()
    torch.testing.assert_close(out["loss_ce"], expected)
    assert out["p"] == pytest.approx(0.15)


def test_bootstrapped_ce_in_the_ramp_keeps_the_scheduled_fraction():
    logits, labels, selector = random_clip(B=1, T=1, H=10, W=10)
    out = VOSLoss(start_step=0, end_step=100)(logits, labels, selector, step=50)
    assert out["p"] == pytest.approx(0.575)
    pixel_loss = F.cross_entropy(logits[0, 0][None], labels[0, 0][None], reduction="none").flatten()
    torch.testing.assert_close(out["loss_ce"], pixel_loss.sort(descending=True).values[:57].mean())


# --- dice ---------------------------------------------------------------------------------------

def test_object_dice_known_answers():
    labels = torch.zeros(1, 1, 2, 5, dtype=torch.int64)
    labels[..., 0, :] = 1                                                   # object 1: the 5 pixels of row 0
    perfect = (labels == 1).float()[:, :, None]                             # (1, 1, 1, 2, 5)
    assert object_dice_loss(perfect, labels).item() == pytest.approx(0.0)
    half = torch.full((1, 1, 1, 2, 5), 0.5)
    # 1 − (2·0.5·5 + 1)/(0.5·10 + 5 + 1) = 1 − 6/11
    assert object_dice_loss(half, labels).item() == pytest.approx(5 / 11)
    disjoint = 1.0 - perfect
    assert object_dice_loss(disjoint, labels).item() == pytest.approx(1 - 1 / 11)


def test_vos_dice_on_aggregated_probabilities_known_answer():
    # two classes (bg, object 1) with logits (0, log 3): object probability 0.75 everywhere
    H, W = 4, 4
    logits = torch.zeros(1, 1, 2, H, W)
    logits[:, :, 1] = math.log(3.0)
    labels = torch.zeros(1, 1, H, W, dtype=torch.int64)
    labels[..., :2, :] = 1                                                   # 8 object pixels
    out = VOSLoss(0, 0)(logits, labels, torch.ones(1, 1), step=0)
    expected = 1 - (2 * 0.75 * 8 + 1) / (0.75 * 16 + 8 + 1)
    assert out["loss_dice"].item() == pytest.approx(expected)
    assert out["loss_vos"].item() == pytest.approx(out["loss_ce"].item() + expected)


def test_padded_objects_do_not_contribute():
    logits, labels, _ = random_clip(B=2, T=2, O=2, seed=3)
    labels = labels.clamp(max=1)                                             # only object 1 is real
    selector = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    loss = VOSLoss(0, 10)
    with_padding = loss(logits, labels, selector, step=5)
    changed = logits.clone()
    changed[:, :, 2] = torch.randn_like(changed[:, :, 2]) * 50               # whatever the padded slot predicts
    with_changed_padding = loss(changed, labels, selector, step=5)
    without_padding = loss(logits[:, :, :2], labels, selector[:, :1], step=5)
    for key in ("loss_ce", "loss_dice", "loss_vos"):
        torch.testing.assert_close(with_padding[key], without_padding[key])
        torch.testing.assert_close(with_changed_padding[key], without_padding[key])


def test_dice_averages_over_real_objects_only():
    logits, labels, _ = random_clip(B=2, T=1, O=2, seed=4)
    labels[1] = labels[1].clamp(max=1)                                       # sample 1 has one real object
    selector = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    out = VOSLoss(0, 10)(logits, labels, selector, step=0)
    probs_0 = logits[0].softmax(1)[:, 1:][None]                              # sample 0: both objects
    probs_1 = logits[1, :, :2].softmax(1)[:, 1:][None]                       # sample 1: object 1 only
    dice = torch.cat([object_dice_loss(probs_0, labels[:1]).flatten(), object_dice_loss(probs_1, labels[1:]).flatten()])
    torch.testing.assert_close(out["loss_dice"], dice.mean())


def test_vos_loss_rejects_bad_input():
    logits, labels, selector = random_clip(O=2)
    loss = VOSLoss(0, 10)
    with pytest.raises(ValueError, match="selector is 0"):
        loss(logits, labels, torch.tensor([[1.0, 0.0], [1.0, 1.0]]), step=0)   # labels use object 2 of sample 0
    with pytest.raises(ValueError, match="labels must lie"):
        loss(logits, labels + 5, selector, step=0)
    with pytest.raises(ValueError, match="labels must be"):
        loss(logits, labels[:, :1], selector, step=0)
    with pytest.raises(ValueError, match="start_step"):
        VOSLoss(10, 5)


# --- the IS set criterion -----------------------------------------------------------------------

def test_criterion_known_answer_with_constant_masks():
    """One target, two queries with constant mask logits: BCE and dice do not depend on where points fall."""
    torch.manual_seed(0)
    K, a = 2, 2.0
    pred_logits = torch.tensor([[[0.0, 5.0, 0.0], [0.0, 0.0, 5.0]]])       # query 0 says class 1, query 1 "no object"
    pred_masks = torch.stack([torch.full((8, 8), a), torch.full((8, 8), -3.0)])[None]
    targets = [{"labels": torch.tensor([1]), "masks": torch.ones(1, 32, 32)}]
    criterion = SetCriterion(num_classes=K, num_points=100)
    losses = criterion({"pred_logits": pred_logits, "pred_masks": pred_masks}, targets)

    assert losses["loss_mask"].item() == pytest.approx(F.softplus(torch.tensor(-a)).item(), rel=1e-5)
    p = torch.sigmoid(torch.tensor(a)).item()
    assert losses["loss_dice"].item() == pytest.approx(1 - (2 * p * 100 + 1) / (p * 100 + 100 + 1), rel=1e-5)
    # query 0 -> class 1 (weight 1), query 1 -> no object (weight 0.1): weighted mean of the two CEs
    ce_0 = F.cross_entropy(pred_logits[0, :1], torch.tensor([1]))
    ce_1 = F.cross_entropy(pred_logits[0, 1:], torch.tensor([K]))
    assert losses["loss_ce"].item() == pytest.approx(((ce_0 + 0.1 * ce_1) / 1.1).item(), rel=1e-5)
    total = 2 * losses["loss_ce"] + 5 * losses["loss_mask"] + 5 * losses["loss_dice"]
    torch.testing.assert_close(losses["loss_is"], total)


def random_is_outputs(B=2, N=5, K=3, H4=8, num_aux=2, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)

    def one():
        return {"pred_logits": torch.randn(B, N, K + 1, generator=g).requires_grad_(requires_grad),
                "pred_masks": torch.randn(B, N, H4, H4, generator=g).requires_grad_(requires_grad)}

    outputs = one()
    outputs["aux_outputs"] = [one() for _ in range(num_aux)]
    return outputs


def test_criterion_deep_supervision_terms_and_total():
    torch.manual_seed(0)
    outputs = random_is_outputs(num_aux=2)
    targets = [{"labels": torch.tensor([0, 2]), "masks": (torch.rand(2, 32, 32) > 0.5).float()},
               {"labels": torch.tensor([1]), "masks": (torch.rand(1, 32, 32) > 0.5).float()}]
    losses = SetCriterion(num_classes=3, num_points=64)(outputs, targets)
    expected_names = {f"loss_{t}{s}" for t in ("ce", "mask", "dice") for s in ("", "_0", "_1")} | {"loss_is"}
    assert set(losses) == expected_names
    weights = {"ce": 2.0, "mask": 5.0, "dice": 5.0}
    total = sum(weights[name.split("_")[1]] * value for name, value in losses.items() if name != "loss_is")
    torch.testing.assert_close(losses["loss_is"], total)


def test_criterion_with_zero_targets():
    outputs = random_is_outputs(B=2, num_aux=1, requires_grad=True)
    targets = [{"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 32, 32)}] * 2
    losses = SetCriterion(num_classes=3, num_points=64)(outputs, targets)
    assert losses["loss_mask"].item() == 0.0 and losses["loss_dice"].item() == 0.0
    # every query is trained towards "no object"
    expected_ce = F.cross_entropy(outputs["pred_logits"].detach().flatten(0, 1), torch.full((10,), 3))
    torch.testing.assert_close(losses["loss_ce"], expected_ce)
    losses["loss_is"].backward()
    assert torch.isfinite(outputs["pred_logits"].grad).all()
    assert outputs["pred_masks"].grad is not None                            # graph stays connected (DDP)


def test_criterion_normalises_by_the_number_of_target_masks():
    """Two identical images with one target each give the same mask loss as one image alone."""
    torch.manual_seed(0)
    pred_logits = torch.zeros(1, 2, 3)
    pred_masks = torch.stack([torch.full((8, 8), 1.5), torch.full((8, 8), -1.0)])[None]
    target = {"labels": torch.tensor([0]), "masks": torch.ones(1, 16, 16)}
    criterion = SetCriterion(num_classes=2, num_points=50)
    one = criterion({"pred_logits": pred_logits, "pred_masks": pred_masks}, [target])
    two = criterion({"pred_logits": pred_logits.repeat(2, 1, 1), "pred_masks": pred_masks.repeat(2, 1, 1, 1)},
                    [target, target])
    torch.testing.assert_close(one["loss_mask"], two["loss_mask"])
    torch.testing.assert_close(one["loss_dice"], two["loss_dice"])


def test_criterion_rejects_class_ids_outside_the_model():
    outputs = random_is_outputs(K=3, num_aux=0)
    targets = [{"labels": torch.tensor([3]), "masks": torch.ones(1, 8, 8)}] * 2
    with pytest.raises(ValueError, match="3 classes"):
        SetCriterion(num_classes=3)(outputs, targets)
    with pytest.raises(ValueError, match="pred_logits"):
        SetCriterion(num_classes=4)(outputs, [{"labels": torch.tensor([0]), "masks": torch.ones(1, 8, 8)}] * 2)


# --- both losses go down under optimisation -----------------------------------------------------

class TinyVOSHead(nn.Module):
    """Two convs from a frame to (O+1) logits: enough capacity to fit one fixed clip."""

    def __init__(self, num_objects: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, num_objects + 1, 3, padding=1))

    def forward(self, frames):                                  # (B, T, 3, H, W) -> (B, T, O+1, H, W)
        B, T = frames.shape[:2]
        return self.net(frames.flatten(0, 1)).unflatten(0, (B, T))


def test_optimiser_steps_drive_the_vos_loss_down():
    torch.manual_seed(0)
    B, T, O, H, W = 2, 2, 2, 16, 16
    labels = torch.zeros(B, T, H, W, dtype=torch.int64)
    labels[:, :, 2:8, 2:8] = 1
    labels[:, :, 9:14, 6:15] = 2
    frames = torch.randn(B, T, 3, H, W) * 0.1 + F.one_hot(labels, 3).permute(0, 1, 4, 2, 3).float()
    model = TinyVOSHead(O)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = VOSLoss(start_step=0, end_step=20)
    history = []
    for step in range(30):
        out = loss_fn(model(frames), labels, torch.ones(B, O), step=0)        # a fixed schedule point: comparable
        optimiser.zero_grad()
        out["loss_vos"].backward()
        optimiser.step()
        history.append(out["loss_vos"].item())
    assert history[-1] < 0.3 * history[0]


def test_optimiser_steps_drive_the_is_loss_down():
    torch.manual_seed(0)
    outputs = random_is_outputs(B=1, N=4, K=2, H4=8, num_aux=1, requires_grad=True)
    parameters = [outputs["pred_logits"], outputs["pred_masks"],
                  outputs["aux_outputs"][0]["pred_logits"], outputs["aux_outputs"][0]["pred_masks"]]
    masks = torch.zeros(2, 32, 32)
    masks[0, :16] = 1
    masks[1, 16:, 8:24] = 1
    targets = [{"labels": torch.tensor([0, 1]), "masks": masks}]
    criterion = SetCriterion(num_classes=2, num_points=128)
    optimiser = torch.optim.Adam(parameters, lr=0.2)
    history = []
    for _ in range(40):
        loss = criterion(outputs, targets)["loss_is"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        history.append(loss.item())
    assert history[-1] < 0.3 * history[0]
