"""Look, click, track (isvos_lite.proposals, `isvos-lite propose`, `isvos-lite predict --click`).

The teaching-world video is val-000 of the default world, seed 0 (the `data/world` of the shipped checkpoint):
every video has its own seed stream, so generating only it (about 1 s) gives the same files.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from isvos_lite.cli import main
from isvos_lite.course import teaching_checkpoint
from isvos_lite.data.palette import read_mask, write_mask
from isvos_lite.inference import VideoSegmenter
from isvos_lite.model.instance_head import pairwise_mask_iou
from isvos_lite.proposals import (NoProposalAtClick, Pick, Picks, Proposal, Proposals, parse_click, pick_by_clicks,
                                  picks_to_mask, propose, write_proposals)
from isvos_lite.viz.proposals import label_point, plot_proposals

# J&F (percent) that starting val-000 from clicks may lose against starting it from the true first-frame mask.
# Measured with the shipped lite checkpoint in this test's setting (fp32): clicks 76.1, true mask 76.0 (+0.1); its
# proposals are good (mask IoU 0.81 and 0.79 with the two objects). Over the val split (scripts/proposal_quality.py,
# 57 videos whose clicks were all accepted) the per-video difference has median -2.4 and 58 % of videos within
# 3 points, but a mean of -8.0: where the best proposal covers an object badly, tracking starts from that error.
# The margin is the median video's spread; a broken click path (wrong ids, masks misplaced) loses far more.
JF_MARGIN = 3.0


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from isvos_lite.data.export import WorldSizes, generate_world
    from isvos_lite.data.world import WorldConfig

    root = tmp_path_factory.mktemp("world") / "toy"
    sizes = WorldSizes(train=0, val=1, lookalike=0, heldout=0, youtube_train=0, youtube_valid=0, coco_train=0,
                       coco_val=0)
    generate_world(root, seed=0, config=WorldConfig(), sizes=sizes, youtube=False, progress=False)
    return root


@pytest.fixture(scope="module")
def seq(world):
    from isvos_lite.data.sequences import davis_sequences
    return davis_sequences(world, "val")[0]


@pytest.fixture(scope="module")
def lite():
    from isvos_lite.checkpoint import load_checkpoint
    return load_checkpoint(teaching_checkpoint("full"))


# ---------------------------------------------------------------------------------------------- the branch
@torch.no_grad()
def reference_proposals(model, frame: np.ndarray, top_k: int, duplicate_iou: float = 0.7):
    """Recomputed from the IS branch's raw outputs: per-query mask logit > 0, score = (1 - p(no object)) x mean
    probability inside the mask x IoU(logit > 1, logit > -1); greedy removal of masks overlapping a kept better one
    by IoU > 0.7; empty masks dropped."""
    h, w = frame.shape[:2]
    ph, pw = -(-h // 32) * 32, -(-w // 32) * 32
    x = torch.zeros(1, 3, ph, pw)
    x[0, :, :h, :w] = torch.from_numpy(frame.copy()).permute(2, 0, 1).float() / 255
    out = model.forward_instance(x)
    logits = F.interpolate(out["pred_masks"], size=(ph, pw), mode="bilinear", align_corners=False)[0, :, :h, :w]
    masks = logits > 0
    quality = (logits.sigmoid() * masks).sum((1, 2)) / (masks.sum((1, 2)) + 1e-6)
    objectness = 1 - out["pred_logits"][0].softmax(-1)[:, -1]
    loose = (logits > -1).sum((1, 2)).float()
    stability = torch.where(loose > 0, (logits > 1).sum((1, 2)) / loose.clamp(min=1), torch.zeros_like(loose))
    scores = objectness * quality * stability
    kept = []
    for q in scores.argsort(descending=True).tolist():
        if not masks[q].any():
            continue
        if all(pairwise_mask_iou(masks[q:q + 1], masks[k:k + 1]).item() <= duplicate_iou for k in kept):
            kept.append(q)
    kept = kept[:top_k]
    return kept, masks[kept].numpy(), scores[kept].numpy()


def test_proposals_equal_what_the_instance_branch_predicts(lite, seq):
    frame = seq.read_frame(0)
    proposals = propose(lite, frame, top_k=8)
    queries, masks, scores = reference_proposals(lite, frame, top_k=8)
    assert len(proposals) == 8
    assert [p.query for p in proposals] == queries
    assert [p.rank for p in proposals] == list(range(1, 9))
    np.testing.assert_array_equal(proposals.masks, masks)
    np.testing.assert_allclose(proposals.scores, scores, rtol=1e-5, atol=1e-6)
    assert np.all(np.diff(proposals.scores) <= 0)
    # id_mask: proposal r drawn with id r, the better-ranked on top
    ids = proposals.id_mask()
    for p in proposals:
        better = np.any(masks[: p.rank - 1], axis=0) if p.rank > 1 else np.zeros_like(p.mask)
        np.testing.assert_array_equal(ids == p.rank, p.mask & ~better)


def test_propose_on_a_large_photo_works_at_max_size(lite):
    skimage_data = pytest.importorskip("skimage.data")
    import cv2

    photo = skimage_data.chelsea()                                    # (300, 451, 3); held out from training
    small = cv2.resize(photo, (round(451 * 160 / 300), 160), interpolation=cv2.INTER_AREA)   # short side 160
    proposals = propose(lite, photo, top_k=5, max_size=160)
    direct = propose(lite, small, top_k=5, max_size=None)
    assert proposals.size == (300, 451) and proposals.masks.shape == (5, 300, 451)
    np.testing.assert_allclose(proposals.scores, direct.scores, rtol=1e-6)
    for big, low in zip(proposals, direct):                        # the same masks, resized back
        resized = cv2.resize(big.mask.astype(np.uint8), small.shape[1::-1], interpolation=cv2.INTER_NEAREST) > 0
        assert (resized != low.mask).mean() < 0.02


def test_an_instance_stage_checkpoint_gives_the_same_proposals(lite, seq, tmp_path):
    """Proposals need only the backbone and the IS branch: an instance-stage checkpoint (random VOS branch) works."""
    from isvos_lite.checkpoint import load_checkpoint, load_instance_branch, save_checkpoint
    from isvos_lite.model.isvos import ISVOS

    torch.manual_seed(3)
    instance_only = ISVOS(lite.cfg)
    load_instance_branch(teaching_checkpoint("full"), instance_only)
    path = save_checkpoint(instance_only, tmp_path / "model.safetensors", meta={"stage": "instance"})
    frame = seq.read_frame(0)
    a, b = propose(lite, frame), propose(load_checkpoint(path), frame)
    np.testing.assert_array_equal(a.masks, b.masks)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6)


# ---------------------------------------------------------------------------------------------- clicks
def _box(shape, top, bottom, left, right):
    mask = np.zeros(shape, bool)
    mask[top:bottom, left:right] = True
    return mask


@pytest.fixture()
def toy_proposals():
    shape = (80, 80)
    boxes = [(0.9, _box(shape, 10, 30, 10, 30)), (0.8, _box(shape, 20, 40, 20, 50)), (0.5, _box(shape, 0, 60, 0, 60))]
    return Proposals([Proposal(rank=r, query=r, score=s, mask=m) for r, (s, m) in enumerate(boxes, 1)], shape)


def test_a_click_picks_the_best_scored_proposal_containing_it(toy_proposals):
    picks = pick_by_clicks(toy_proposals, [(45, 25), (15, 15)])
    assert [p.proposal.rank for p in picks] == [2, 1]
    assert [p.object_id for p in picks] == [1, 2]
    mask = picks.to_mask()
    assert mask[25, 45] == 1 and mask[15, 15] == 2
    assert mask[25, 25] == 2                   # in both picked proposals: the better-ranked (1, object 2) keeps it
    assert mask[50, 50] == 0                   # proposal 3 was not picked
    np.testing.assert_array_equal(np.asarray(picks), mask)
    assert pick_by_clicks(toy_proposals, [(55, 55)])[0].proposal.rank == 3     # only the big one contains it


def test_clicks_are_separate_objects_so_a_merged_proposal_is_passed_over():
    shape = (40, 60)
    left, right = _box(shape, 10, 30, 5, 25), _box(shape, 10, 30, 35, 55)
    proposals = Proposals([Proposal(1, 0, 0.9, left | right), Proposal(2, 1, 0.6, left),
                           Proposal(3, 2, 0.5, right)], shape)
    assert pick_by_clicks(proposals, [(15, 20)])[0].proposal.rank == 1     # one click: the best-scored holding it
    picks = pick_by_clicks(proposals, [(15, 20), (45, 20)])                 # two objects: each its own mask
    assert [p.proposal.rank for p in picks] == [2, 3]
    np.testing.assert_array_equal(picks.to_mask(), left * 1 + right * 2)


def test_a_click_on_background_is_refused_naming_the_nearest(toy_proposals):
    with pytest.raises(NoProposalAtClick, match=r"click 1 at 70,70 lies on none of the 3 proposals.*nearest is "
                                                 r"proposal 3 \(score 0\.500\), 15\.6 px away") as err:
        pick_by_clicks(toy_proposals, [(70, 70)])
    assert err.value.nearest.rank == 3 and err.value.distance == pytest.approx(np.hypot(11, 11))


def test_bad_clicks_are_refused_clearly(toy_proposals):
    with pytest.raises(ValueError, match=r"click 1 at 80,5 is outside the 80x80 frame"):
        pick_by_clicks(toy_proposals, [(80, 5)])
    with pytest.raises(ValueError, match=r"clicks 1 and 2 both pick proposal 1"):
        pick_by_clicks(toy_proposals, [(12, 12), (14, 14)])             # only proposals 1 and 3 hold either
    with pytest.raises(ValueError, match="at least one click"):
        pick_by_clicks(toy_proposals, [])
    with pytest.raises(NoProposalAtClick, match="proposed no object"):
        pick_by_clicks(Proposals([], (10, 10)), [(1, 1)])
    assert parse_click("12,7") == (12, 7) and parse_click(" 3.6, 4 ") == (4, 4)
    for bad in ("12", "a,b", "1,2,3"):
        with pytest.raises(ValueError, match="is not X,Y"):
            parse_click(bad)


def test_a_click_inside_a_real_object_picks_it(lite, seq):
    frame, truth = seq.read_frame(0), seq.read_given_mask(0)
    proposals = propose(lite, frame)
    clicks = [label_point(truth == o) for o in seq.object_ids]
    picks = pick_by_clicks(proposals, clicks)
    for pick, object_id in zip(picks, seq.object_ids):
        assert pick.proposal.contains(*pick.click)
        assert pairwise_mask_iou(torch.from_numpy(pick.proposal.mask[None]),
                                 torch.from_numpy((truth == object_id)[None])).item() > 0.7


def test_a_click_on_real_background_is_refused(lite, seq):
    import cv2

    proposals = propose(lite, seq.read_frame(0))
    covered = proposals.masks.any(0)
    far = cv2.distanceTransform((~covered).astype(np.uint8), cv2.DIST_L2, 5)        # distance to the proposals
    y, x = np.unravel_index(int(far.argmax()), far.shape)
    distances = [p.distance_to(x, y) for p in proposals]
    nearest = proposals[int(np.argmin(distances))]
    with pytest.raises(NoProposalAtClick, match=rf"nearest is proposal {nearest.rank} .*{min(distances):.1f} px away"):
        pick_by_clicks(proposals, [(x, y)])


def test_the_segmenter_takes_picks_as_the_first_mask(lite, seq):
    frames = [seq.read_frame(t) for t in range(3)]
    proposals = propose(lite, frames[0])
    picks = pick_by_clicks(proposals, [proposals[0].inside_point, proposals[2].inside_point])
    a, b = VideoSegmenter(lite, amp=False), VideoSegmenter(lite, amp=False)
    out_a = [a.probs_to_mask(a.step(f, picks if t == 0 else None)) for t, f in enumerate(frames)]
    out_b = [b.probs_to_mask(b.step(f, picks_to_mask(picks) if t == 0 else None)) for t, f in enumerate(frames)]
    np.testing.assert_array_equal(out_a[0], picks.to_mask())
    for x, y in zip(out_a, out_b):
        np.testing.assert_array_equal(x, y)


def test_proposals_file_and_figure(lite, seq, tmp_path):
    proposals = propose(lite, seq.read_frame(0), top_k=4)
    path = write_proposals(tmp_path / "p.png", proposals)
    np.testing.assert_array_equal(read_mask(path), proposals.id_mask())
    with pytest.raises(ValueError, match="must end in .png"):
        write_proposals(tmp_path / "p.jpg", proposals)
    figure = plot_proposals(seq.read_frame(0), proposals, clicks=[(10, 10)])
    labels = {t.get_text() for t in figure.axes[0].texts}
    assert labels == {"1", "2", "3", "4"}
    assert sum(ax.get_visible() for ax in figure.axes) == 5


# ---------------------------------------------------------------------------------------------- the command line
def _jf(truth: np.ndarray, predicted: np.ndarray, object_ids) -> float:
    from isvos_lite.eval.scorer import per_frame_scores

    scores = per_frame_scores(truth, predicted, object_ids=object_ids)
    return 100 * float(np.mean([(s["J"][1:-1].mean() + s["F"][1:-1].mean()) / 2 for s in scores.values()]))


@pytest.mark.slow          # about 5-13 s on 2 cores (two 20-frame runs); `make test-fast` skips it
def test_cli_round_trip_propose_then_click_reaches_the_mask_started_jf(seq, world, tmp_path, capsys):
    ckpt = str(teaching_checkpoint("full"))
    frames_dir = world / "JPEGImages" / "480p" / seq.name
    truth = np.stack([seq.read_gt(t) for t in range(len(seq))])
    assert main(["propose", "--checkpoint", ckpt, "--frame", str(frames_dir), "--out", str(tmp_path / "p.png"),
                 "--figure", str(tmp_path / "p_fig.png")]) == 0
    assert (tmp_path / "p_fig.png").stat().st_size > 0
    numbers = read_mask(tmp_path / "p.png")
    # as a user would: for each object, the proposal number covering most of it, clicked in its visible middle
    clicks, chosen = [], []
    for object_id in seq.object_ids:
        inside = numbers[truth[0] == object_id]
        rank = int(np.bincount(inside[inside > 0]).argmax())
        chosen.append(rank)
        clicks += ["--click", "{},{}".format(*label_point(numbers == rank))]
    assert main(["predict", "--checkpoint", ckpt, "--frames", str(frames_dir), *clicks,
                 "--out", str(tmp_path / "clicked"), "--no-amp"]) == 0
    printed = capsys.readouterr().out
    for i, rank in enumerate(chosen, 1):
        assert f"-> proposal {rank} " in printed and f"= object {i}" in printed
    mask_dir = world / "Annotations" / "480p" / seq.name
    assert main(["predict", "--checkpoint", ckpt, "--frames", str(frames_dir), "--mask",
                 str(sorted(mask_dir.glob("*.png"))[0]), "--out", str(tmp_path / "masked"), "--no-amp"]) == 0
    names = seq.frame_names
    clicked = np.stack([read_mask(tmp_path / "clicked" / f"{n}.png") for n in names])
    masked = np.stack([read_mask(tmp_path / "masked" / f"{n}.png") for n in names])
    # the first frame is the picked proposals themselves (click i = object i, i.e. the true ids here)
    for i, rank in enumerate(chosen, 1):
        assert (clicked[0] == i).sum() > 0 and np.all(numbers[clicked[0] == i] > 0)
    jf_click, jf_mask = _jf(truth, clicked, seq.object_ids), _jf(truth, masked, seq.object_ids)
    assert jf_mask > 60, jf_mask
    assert jf_click >= jf_mask - JF_MARGIN, (jf_click, jf_mask)


def test_the_picker_follows_clicks_and_refuses_background(lite, seq):
    from matplotlib.backend_bases import MouseEvent
    from isvos_lite.viz.proposal_picker import ProposalPicker

    proposals = propose(lite, seq.read_frame(0))
    picker = ProposalPicker(seq.read_frame(0), proposals)
    assert picker.picks[0].proposal.rank == 1                       # starts in the middle of proposal 1
    target = proposals[2].inside_point
    x, y = picker.frame_ax.transData.transform(target)
    picker.on_click(MouseEvent("button_press_event", picker.fig.canvas, x, y, button=1))
    assert picker.point == target and (picker.x_slider.value, picker.y_slider.value) == target
    assert picker.picks[0].proposal.rank == 3
    far = np.unravel_index(int(np.argmin(proposals.masks.any(0))), proposals.size)  # a pixel no proposal holds
    picker.x_slider.value, picker.y_slider.value = int(far[1]), int(far[0])          # the slider path
    with pytest.raises(NoProposalAtClick):
        picker.picks
    assert picker.fig.axes[1].get_title() == "nothing picked"
    assert "lies on none of the" in picker.fig.axes[1].texts[0].get_text()


def test_cli_click_errors(seq, world, tmp_path, capsys):
    ckpt = str(teaching_checkpoint("full"))
    frames_dir = str(world / "JPEGImages" / "480p" / seq.name)
    assert main(["predict", "--checkpoint", ckpt, "--frames", frames_dir, "--click", "0,0", "--proposals", "1",
                 "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "click 1 at 0,0 lies on none of the 1 proposals" in err and "nearest is proposal 1" in err
    assert not (tmp_path / "o").exists()
    with pytest.raises(SystemExit):
        main(["predict", "--checkpoint", ckpt, "--frames", frames_dir, "--click", "1,1", "--mask", "m.png",
              "--out", str(tmp_path / "o")])
    assert "not allowed with argument" in capsys.readouterr().err
    assert main(["predict", "--checkpoint", ckpt, "--frames", frames_dir, "--click", "1,1", "--objects", "1",
                 "--out", str(tmp_path / "o")]) == 1
    assert "leave --objects out" in capsys.readouterr().err
    write_mask(tmp_path / "exists.png", np.zeros((4, 4), np.uint8))
    assert main(["propose", "--checkpoint", ckpt, "--frame", frames_dir, "--out", str(tmp_path / "exists.png")]) == 1
    assert "pass --overwrite" in capsys.readouterr().err


def test_proposal_quality_script_measures_the_best_and_the_clicked_proposal(lite, seq, world, tmp_path):
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "proposal_quality.py"
    spec = importlib.util.spec_from_file_location("proposal_quality", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "quality.json"
    assert script.main(["--checkpoint", str(teaching_checkpoint("full")), "--davis", str(world), "--split", "val",
                        "--no-track", "--json", str(out)]) == 0
    row = json.loads(out.read_text())["rows"][0]
    truth, proposals = seq.read_given_mask(0), propose(lite, seq.read_frame(0))
    expected = [max(pairwise_mask_iou(torch.from_numpy(p.mask[None]), torch.from_numpy((truth == o)[None])).item()
                    for p in proposals) for o in seq.object_ids]
    np.testing.assert_allclose(row["best_iou"], expected, rtol=1e-6)
    assert row["refused"] is None and all(c <= b + 1e-9 for c, b in zip(row["clicked_iou"], row["best_iou"]))
