"""The instance-image stream (the teaching world's COCO), its COCO export and the instance-AP scorer."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from isvos_lite.data.instance_stream import (
    EXPORT_TRAIN_OFFSET,
    EXPORT_VAL_OFFSET,
    InstanceStreamConfig,
    InstanceStreamDataset,
    export_instance_coco,
    render_instance_image,
)
from isvos_lite.data.shapes import SHAPE_CATEGORIES

pycocotools = pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402

SMALL = InstanceStreamConfig(height=70, width=90, crop_size=64)


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("stream_coco")
    summary = export_instance_coco(out, seed=3, train_images=6, val_images=4, config=SMALL)
    return out, summary


def _quiet_coco(path):
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


# ---------------------------------------------------------------------------------------------- rendering
def test_render_is_deterministic_and_index_dependent():
    config = InstanceStreamConfig()
    a = render_instance_image(config, 0, 5)
    b = render_instance_image(config, 0, 5)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    c = render_instance_image(config, 0, 6)
    d = render_instance_image(config, 1, 5)
    assert not np.array_equal(a[0], c[0]) and not np.array_equal(a[0], d[0])
    assert a[0].shape == (160, 288, 3) and a[0].dtype == np.uint8 and a[1].shape == (160, 288)


def test_labels_contiguous_visible_and_hard_cases_present():
    config = InstanceStreamConfig()
    same_texture_other_class = touching = 0
    for index in range(40):
        image, ids, cats, specs = render_instance_image(config, 7, index, return_specs=True)
        m = len(cats)
        assert len(specs) == m and all(s.category == c for s, c in zip(specs, cats))
        present = sorted(set(np.unique(ids).tolist()) - {0})
        assert present == list(range(1, m + 1))                           # ids contiguous 1..M
        areas = np.bincount(ids.reshape(-1), minlength=m + 1)[1:]
        assert (areas >= config.min_visible_area).all()
        assert all(c in SHAPE_CATEGORIES for c in cats)
        # same texture object, different category, both visible
        for i, s in enumerate(specs):
            for j, t in enumerate(specs[:i]):
                if s.texture is t.texture and s.category != t.category:
                    same_texture_other_class += 1
        # touching / overlapping: an instance's 1-px dilation reaches another instance
        kernel = np.ones((3, 3), np.uint8)
        for k in range(1, m + 1):
            grown = cv2.dilate((ids == k).astype(np.uint8), kernel) > 0
            if np.any((ids[grown] != k) & (ids[grown] != 0)):
                touching += 1
                break
    assert same_texture_other_class >= 3
    assert touching >= 10


def test_config_validation():
    with pytest.raises(ValueError, match="multiple of 32"):
        InstanceStreamConfig(crop_size=100)
    with pytest.raises(ValueError, match="min_instances"):
        InstanceStreamConfig(min_instances=5, max_instances=2)
    with pytest.raises(ValueError, match="categories"):
        InstanceStreamConfig(categories=("hexagon",))
    with pytest.raises(ValueError, match="probability"):
        InstanceStreamConfig(same_texture_probability=1.5)
    with pytest.raises(ValueError, match="scale_jitter"):
        InstanceStreamConfig(scale_jitter=(1.2, 0.9))


# ---------------------------------------------------------------------------------------------- dataset
def test_dataset_item_format_matches_coco_dataset(export_dir):
    from isvos_lite.data.instance_dataset import COCOInstanceDataset

    out, _ = export_dir
    coco_ds = COCOInstanceDataset(out / "train", out / "annotations" / "instances_train.json", crop_size=64)
    stream = InstanceStreamDataset(SMALL, seed=0, length=1000)
    assert len(stream) == 1000 and stream.num_classes == coco_ds.num_classes == 4
    assert stream.category_names == coco_ds.category_names
    torch.manual_seed(0)
    ref = coco_ds[0]
    for index in (0, 17):
        item = stream[index]
        assert set(item) == set(ref) and set(item["info"]) == set(ref["info"])
        for key in ("image", "masks", "labels"):
            assert item[key].dtype == ref[key].dtype
            assert item[key].dim() == ref[key].dim()
        assert item["image"].shape == (3, 64, 64) and 0 <= item["image"].min() and item["image"].max() <= 1
        m = item["masks"].shape[0]
        assert item["masks"].shape == (m, 64, 64) and item["labels"].shape == (m,)
        if m:
            assert item["masks"].sum(0).max() <= 1                     # disjoint
            assert (item["masks"].flatten(1).sum(1) >= stream.min_pixels).all()
    # the trainer's per-item seeding makes the augmentation deterministic
    torch.manual_seed(5)
    a = stream[3]
    torch.manual_seed(5)
    b = stream[3]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["masks"], b["masks"])
    plain = InstanceStreamDataset(SMALL, seed=0, length=10, augment=False)
    assert torch.equal(plain[2]["image"], plain[2]["image"])
    with pytest.raises(IndexError):
        plain[10]


def test_dataset_default_is_one_scale_video_frame():
    config = InstanceStreamConfig()
    assert (config.height, config.width, config.crop_size) == (160, 288, 160)
    item = InstanceStreamDataset(config, augment=False)[0]
    image, ids, _ = render_instance_image(config, 0, 0)
    # centre crop at scale 1: the item is exactly the middle 160 columns of the rendered image
    crop = image[:, 64:224].transpose(2, 0, 1).astype(np.float32) / 255
    assert np.allclose(item["image"].numpy(), crop)


# ---------------------------------------------------------------------------------------------- export
def test_export_loads_in_pycocotools_and_masks_match(export_dir, tmp_path):
    from isvos_lite.data.palette import read_frame

    out, summary = export_dir
    assert summary["train_images"] == 6 and summary["val_images"] == 4
    for split, offset, count in (("train", EXPORT_TRAIN_OFFSET, 6), ("val", EXPORT_VAL_OFFSET, 4)):
        coco = _quiet_coco(out / "annotations" / f"instances_{split}.json")
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(SHAPE_CATEGORIES)
        assert len(coco.getImgIds()) == count
        for i in range(count):
            img = coco.loadImgs([i + 1])[0]
            assert (img["height"], img["width"]) == (70, 90) and img["file_name"] == f"{i:06d}.jpg"
            assert read_frame(out / split / img["file_name"]).shape == (70, 90, 3)
            _, ids, cats = render_instance_image(SMALL, 3, offset + i)
            anns = coco.loadAnns(coco.getAnnIds(imgIds=[i + 1]))
            assert len(anns) == len(cats)
            for k, ann in enumerate(anns, start=1):
                assert np.array_equal(coco.annToMask(ann), (ids == k).astype(np.uint8))
                assert ann["category_id"] == SHAPE_CATEGORIES.index(cats[k - 1]) + 1
                assert ann["area"] == int((ids == k).sum()) and ann["iscrowd"] == 0
    # train and val images differ
    train0 = read_frame(out / "train" / "000000.jpg")
    val0 = read_frame(out / "val" / "000000.jpg")
    assert np.abs(train0.astype(int) - val0.astype(int)).mean() > 5
    # deterministic per seed: byte-identical JSON
    again = tmp_path / "again"
    export_instance_coco(again, seed=3, train_images=6, val_images=4, config=SMALL)
    for split in ("train", "val"):
        name = f"annotations/instances_{split}.json"
        assert (out / name).read_bytes() == (again / name).read_bytes()
    info = json.loads((out / "annotations/instances_val.json").read_text())["info"]
    assert info["index_offset"] == EXPORT_VAL_OFFSET


# ---------------------------------------------------------------------------------------------- AP
def _gt_instances(coco, image_id):
    return [(coco.annToMask(a).astype(bool), SHAPE_CATEGORIES.index(coco.loadCats([a["category_id"]])[0]["name"]), 1.0)
            for a in coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))]


def test_ap_perfect_missing_and_wrong_classes(export_dir):
    from isvos_lite.eval.instance_ap import evaluate_results, instance_results

    out, _ = export_dir
    coco = _quiet_coco(out / "annotations" / "instances_train.json")
    cat_ids = sorted(coco.getCatIds())
    image_ids = sorted(coco.getImgIds())
    perfect = [r for i in image_ids for r in instance_results(i, _gt_instances(coco, i), cat_ids)]
    result = evaluate_results(coco, perfect)
    assert result["ap"] == pytest.approx(100) and result["agnostic_ap"] == pytest.approx(100)
    assert result["ap50"] == pytest.approx(100) and result["images"] == len(image_ids)
    assert all(v is None or v == pytest.approx(100) for v in result["per_class"].values())

    # half of all instances found (perfectly, score 1), nothing else: recall r = k/N with precision 1 up to it,
    # so AP = (COCO's recall thresholds 0, 0.01, ..., 1 that are <= r) / 101; for N even: 51 / 101 = 50.495 %
    all_instances = [(i, inst) for i in image_ids for inst in _gt_instances(coco, i)]
    n_total, k = len(all_instances), len(all_instances) // 2
    expected = 100 * np.count_nonzero(np.linspace(0, 1, 101) <= k / n_total) / 101
    assert expected == pytest.approx(100 * (np.floor(100 * k / n_total) + 1) / 101)
    half = [r for i, inst in all_instances[:k] for r in instance_results(i, [inst], cat_ids)]
    result = evaluate_results(coco, half)
    assert result["agnostic_ap"] == pytest.approx(expected, abs=1e-3)
    assert result["agnostic_ap50"] == pytest.approx(expected, abs=1e-3)
    assert result["ap"] < 100

    # right masks, every class wrong: per-class AP 0, class-agnostic AP still 100
    shifted = [r for i in image_ids
               for r in instance_results(i, [(m, (c + 1) % 4, s) for m, c, s in _gt_instances(coco, i)], cat_ids)]
    result = evaluate_results(coco, shifted)
    assert result["ap"] == pytest.approx(0) and result["agnostic_ap"] == pytest.approx(100)
    assert result["agnostic_ap"] >= result["ap"]

    # no predictions at all
    assert evaluate_results(coco, [])["ap"] == 0.0


def test_oracle_ranking_puts_each_instances_best_mask_first(export_dir):
    from isvos_lite.eval.instance_ap import oracle_scores, evaluate_results, instance_results

    out, _ = export_dir
    coco = _quiet_coco(out / "annotations" / "instances_train.json")
    cat_ids = sorted(coco.getCatIds())
    image_id = sorted(coco.getImgIds())[0]
    truth = _gt_instances(coco, image_id)
    junk_mask = np.zeros_like(truth[0][0])
    junk_mask[:3, :3] = True
    # the model ranks a junk mask and a duplicate of the first instance above every true mask: AP < 100; a perfect
    # ranking puts one mask per instance first and the junk and the duplicate after them: AP 100
    instances = [(junk_mask, 0, 1.0), (truth[0][0].copy(), 0, 0.9)] + [(m, c, 0.5) for m, c, _ in truth]
    scores = oracle_scores(coco, image_id, [m for m, _, _ in instances])
    assert scores[0] < 1                                            # the junk mask: no instance's best mask
    assert sorted(scores[1:3]) == pytest.approx([1.0, 2.0])         # of two perfect masks of one instance, one is
    assert scores[3:] == pytest.approx([2.0] * (len(truth) - 1))    # first (1 + IoU) and the other a duplicate
    as_ranked = instance_results(image_id, instances, cat_ids, agnostic=True)
    oracle = [dict(r, score=s) for r, s in zip(as_ranked, scores)]
    assert evaluate_results(coco, as_ranked, [image_id])["agnostic_ap"] < 100
    assert evaluate_results(coco, oracle, [image_id])["agnostic_ap"] == pytest.approx(100)
    # scoring each mask by its best IoU alone (the diagnostic before) is not a perfect ranking: the duplicate ties
    # the true masks, and one copy of instance 0 is a false positive among them
    by_best_iou = [dict(r, score=min(s, 1.0)) for r, s in zip(as_ranked, scores)]
    assert evaluate_results(coco, by_best_iou, [image_id])["agnostic_ap"] < 100


class _FixedInstanceModel(torch.nn.Module):
    """A stand-in IS branch with fixed outputs: one query per ground-truth instance of one image (the exact mask,
    probability spread evenly over the 4 classes) and one junk query (an empty corner, one class at 0.5)."""

    def __init__(self, gt_masks):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.gt_masks = gt_masks

    def forward_instance(self, images):
        _, _, ph, pw = images.shape
        h, w = self.gt_masks.shape[1:]
        masks = torch.full((1, len(self.gt_masks) + 1, ph, pw), -10.0)
        masks[0, :-1, :h, :w] = torch.where(torch.from_numpy(self.gt_masks), 10.0, -10.0)
        masks[0, -1, :2, :2] = 10.0                                              # junk: a 2x2 corner
        probs = torch.full((len(self.gt_masks) + 1, 5), 0.01)
        probs[:-1, :4] = 0.24                                                     # sure of "an object", not which
        probs[-1, 0], probs[-1, 4] = 0.5, 0.46                                   # junk: one class at 0.5
        return {"pred_logits": probs.log()[None], "pred_masks": masks}


def test_class_agnostic_scores_a_query_by_its_object_probability(export_dir, tmp_path):
    """Class-agnostic AP ranks queries by P(some object) = the sum of the class probabilities: the true masks
    (0.96 object, at most 0.24 per class) come before the junk query (0.5 for one class, 0.54 object)."""
    from isvos_lite.eval.instance_ap import score_instance_ap

    out, _ = export_dir
    coco = _quiet_coco(out / "annotations" / "instances_val.json")
    image_id = sorted(coco.getImgIds())[0]
    gt = np.stack([m for m, _, _ in _gt_instances(coco, image_id)])
    result = score_instance_ap(_FixedInstanceModel(gt), out, split="val", max_images=1, progress=False)
    assert result["agnostic_ap"] == pytest.approx(100)
    assert result["ap"] < 100        # per class each mask is listed under all 4 classes at 0.24, 3 of them wrong


def test_agnostic_dedupes_queries():
    from isvos_lite.eval.instance_ap import instance_results

    mask = np.zeros((8, 8), bool)
    mask[2:5, 2:5] = True
    instances = [(mask, 0, 0.9), (mask, 1, 0.5), (mask, 2, 0.4)]
    assert len(instance_results(1, instances, [1, 2, 3, 4], query_index=[0, 0, 1], agnostic=True)) == 2
    assert len(instance_results(1, instances, [1, 2, 3, 4])) == 3


def test_score_instance_ap_end_to_end_tiny_model(export_dir, tmp_path):
    from isvos_lite.config import get_preset
    from isvos_lite.eval.instance_ap import predict_instances, score_instance_ap
    from isvos_lite.model.isvos import ISVOS

    out, _ = export_dir
    torch.manual_seed(0)
    model = ISVOS(get_preset("tiny")).eval()
    image, _, _ = render_instance_image(SMALL, 3, 0)
    preds = predict_instances(model, image, max_detections=10)
    assert 0 < len(preds) <= 10
    assert all(m.shape == (70, 90) and m.dtype == bool and 0 <= c < 4 for m, c, _ in preds)
    scores = [s for _, _, s in preds]
    assert scores == sorted(scores, reverse=True)
    result = score_instance_ap(model, out, split="val", max_images=3, progress=False, diagnose=True)
    assert result["images"] == 3 and result["split"] == "val"
    assert 0 <= result["oracle_agnostic_ap"] <= 100 and 0 <= result["oracle_agnostic_ap50"] <= 100
    for key in ("ap", "ap50", "ap75", "agnostic_ap", "agnostic_ap50", "agnostic_ap75"):
        assert 0 <= result[key] <= 100
    assert set(result["per_class"]) == set(SHAPE_CATEGORIES)

    # the CLI: both splits, JSON out
    from isvos_lite.checkpoint import save_checkpoint
    from isvos_lite.cli import main

    ckpt = save_checkpoint(model, tmp_path / "tiny.safetensors")
    report_path = tmp_path / "ap.json"
    assert main(["instance-ap", "--checkpoint", str(ckpt), "--coco", str(out), "--split", "both",
                 "--max-images", "2", "--threads", "1", "--quiet", "--diagnose", "--out", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert set(report["splits"]) == {"train", "val"} and "train_minus_val" in report
    assert "oracle_agnostic_ap" in report["splits"]["val"]
    assert main(["instance-ap", "--checkpoint", str(ckpt), "--coco", str(tmp_path / "nowhere")]) == 1
    assert main(["instance-ap", "--checkpoint", str(ckpt), "--coco", str(out), "--preset", "lite"]) == 1


def _square(size, y0, x0, side):
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[y0:y0 + side, x0:x0 + side] = True
    return mask


def test_suppress_duplicates_methods():
    from isvos_lite.eval.instance_ap import suppress_duplicates
    from isvos_lite.model.instance_head import pairwise_mask_iou

    a = _square(20, 0, 0, 10)
    a_dup = a.clone()
    a_dup[10, 0] = True                                        # IoU 100/101 with a
    b = _square(20, 10, 10, 10)
    masks = torch.stack([a_dup, b, a, torch.zeros(20, 20, dtype=torch.bool)])
    scores = torch.tensor([0.8, 0.7, 0.9, 0.1])
    iou = pairwise_mask_iou(masks, masks)
    assert iou[0, 2] == pytest.approx(100 / 101) and iou[1, 2] == 0 and iou[3, 3] == 0   # empty vs empty: 0

    keep, new = suppress_duplicates(masks, scores, "none")
    assert keep.tolist() == [2, 0, 1, 3] and new.tolist() == pytest.approx([0.9, 0.8, 0.7, 0.1])
    keep, new = suppress_duplicates(masks, scores, "nms", 0.7)
    assert keep.tolist() == [2, 1, 3]                          # the duplicate of a is dropped
    keep, new = suppress_duplicates(masks, scores, "demote", 0.7)
    assert keep.tolist() == [2, 1, 3, 0] and new[-1] == pytest.approx(0.008)   # kept, after every non-duplicate
    keep, new = suppress_duplicates(masks, scores, "demote", 0.995)             # above the threshold: unchanged
    assert keep.tolist() == [2, 0, 1, 3]
    keep, new = suppress_duplicates(masks, scores, "matrix")
    # Matrix NMS, linear kernel: a_dup decays by (1 - 100/101) / (1 - 0); b and the empty mask overlap nothing
    assert keep.tolist() == [2, 1, 3, 0] and new[-1] == pytest.approx(0.8 / 101)
    with pytest.raises(ValueError, match="unknown duplicate suppression"):
        suppress_duplicates(masks, scores, "soft")


def test_demoting_a_duplicate_raises_class_agnostic_ap(export_dir):
    """A duplicate ranked above a true mask is a false positive at that recall; demoted, it is not."""
    from isvos_lite.eval.instance_ap import evaluate_results, instance_results, suppress_duplicates

    out, _ = export_dir
    coco = _quiet_coco(out / "annotations" / "instances_train.json")
    image_id = sorted(coco.getImgIds())[0]
    truth = _gt_instances(coco, image_id)
    assert len(truth) >= 2
    masks = [truth[0][0], truth[0][0].copy()] + [m for m, _, _ in truth[1:]]
    scores = torch.tensor([0.9, 0.8] + [0.5] * (len(truth) - 1))
    stacked = torch.from_numpy(np.stack(masks))
    plain = instance_results(image_id, [(m, 0, float(s)) for m, s in zip(masks, scores)], [1], agnostic=True)
    keep, new = suppress_duplicates(stacked, scores, "demote", 0.7)
    demoted = instance_results(image_id, [(masks[q], 0, float(s)) for q, s in zip(keep.tolist(), new.tolist())],
                               [1], agnostic=True)
    assert evaluate_results(coco, plain, [image_id])["agnostic_ap"] < 100
    assert evaluate_results(coco, demoted, [image_id])["agnostic_ap"] == pytest.approx(100)


def test_stability_score_is_the_iou_of_the_mask_at_two_thresholds():
    from isvos_lite.eval.instance_ap import stability_score

    sharp = torch.full((10, 10), -10.0)
    sharp[:5] = 10.0                                            # a confident mask: the same at -1 and +1
    soft = torch.full((10, 10), -10.0)
    soft[:4] = 3.0                                              # 40 pixels above +1
    soft[4:8] = 0.5                                             # 40 more between -1 and +1: loose mask 80
    empty = torch.full((10, 10), -10.0)
    scores = stability_score(torch.stack([sharp, soft, empty]))
    assert scores.tolist() == pytest.approx([1.0, 0.5, 0.0])
    assert stability_score(torch.stack([soft]), offset=0.25).item() == pytest.approx(1.0)
