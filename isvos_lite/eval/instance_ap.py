"""Instance-segmentation AP of the IS branch (§3.1, Mask2Former) on a COCO-format split.

The IS branch is trained as a Mask2Former; this module measures it the way Mask2Former is measured
on COCO: Mask2Former's instance inference (:func:`predict_instances`) and the standard COCO mask AP
of ``pycocotools`` (``COCOeval(iouType="segm")``), in percent:

- ``ap, ap50, ap75, ap_small, ap_medium, ap_large, ar1, ar10, ar100``: per-class (standard) COCO numbers;
- ``per_class``: AP of each category;
- ``agnostic_ap, agnostic_ap50, agnostic_ap75``: class-agnostic AP: every ground-truth instance and every
  prediction is mapped to one category, so only the masks count ("does it find and separate the
  instances?"), not the classes. Each query is one prediction there, its mask scored like Mask2Former's but
  with the probability of the merged category, "some object" = the sum of its K class probabilities
  (1 − p(no object)), instead of one class's (the largest class probability understates a query that is
  sure it sees an object but not which one), and times the mask's stability score (SAM's: the IoU of the mask
  thresholded at logit +1 and at −1; :func:`stability_score`), which orders good masks by their accuracy better
  than the mean probability inside the mask alone. Duplicates — a query's mask overlapping a higher-scored query's mask
  by IoU > 0.7 — are demoted (score × 0.01, ranked after every non-duplicate; :func:`suppress_duplicates`):
  several of the 16 queries often cover one instance, and Mask2Former itself ranks them unsuppressed. Chosen on
  400 training images among hard NMS, demotion and Matrix NMS, the stability factor among three scores
  (``docs/experiments/instance_ranking_protocol.md`` and its amendment 1).

- ``oracle_agnostic_ap, oracle_agnostic_ap50`` (only with ``diagnose=True``): the class-agnostic AP of the same
  masks ranked as a perfect scorer would rank them (each ground-truth instance's best mask first, by its IoU;
  duplicates and strays after them; :func:`oracle_scores`): the AP a perfect ranking would give these masks.
  Far above ``agnostic_ap``: the scores (objectness, classes) hold the branch back; close to it: the masks
  themselves do.

Numbers pycocotools cannot compute (no ground truth in that area range / class) are ``None``.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from isvos_lite.model.instance_head import pairwise_mask_iou, postprocess_instances

__all__ = ["predict_instances", "query_predictions", "instance_results", "evaluate_results", "score_instance_ap",
           "require_pycocotools", "suppress_duplicates", "stability_score", "DUPLICATE_IOU", "agnostic_ground_truth",
           "coco_percent", "run_cocoeval", "oracle_scores", "load_coco_gt"]

DUPLICATE_IOU = 0.7     # a mask overlapping a higher-scored one by more is a duplicate (class-agnostic ranking)

STAT_NAMES = ("ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large",
              "ar1", "ar10", "ar100", "ar_small", "ar_medium", "ar_large")


def require_pycocotools():
    """Import pycocotools (COCO, COCOeval, mask) or fail with how to install it."""
    try:
        from pycocotools import mask as mask_utils
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as err:
        raise RuntimeError("instance AP needs pycocotools, which is not installed: `pip install pycocotools` "
                           "(a dependency of isvos-lite: reinstall it with `pip install -e .`)") from err
    return COCO, COCOeval, mask_utils


# --------------------------------------------------------------------------------------
# inference
# --------------------------------------------------------------------------------------

def stability_score(mask_logits: torch.Tensor, offset: float = 1.0) -> torch.Tensor:
    """SAM's stability score of each mask: IoU of the mask thresholded at logit +offset and at logit -offset.
    (n, H, W) logits -> (n,) in [0, 1]; 0 for a mask that is empty at -offset."""
    strict = (mask_logits > offset).flatten(1).sum(1).float()                    # contained in the loose mask,
    loose = (mask_logits > -offset).flatten(1).sum(1).float()                    # so IoU = |strict| / |loose|
    return torch.where(loose > 0, strict / loose.clamp(min=1), torch.zeros_like(loose))


@torch.no_grad()
def _predict(model, image: np.ndarray, max_detections: int = 100) -> dict:
    """Mask2Former instance inference on one (H, W, 3) uint8 RGB image -> postprocess_instances' dict (on CPU)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"predict_instances: expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
    if max_detections < 1:
        raise ValueError(f"max_detections must be >= 1, got {max_detections}")
    h, w = image.shape[:2]
    ph, pw = -(-h // 32) * 32, -(-w // 32) * 32                     # pad bottom/right to the model stride
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        x = torch.zeros(1, 3, ph, pw, device=device)
        x[0, :, :h, :w] = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).to(device).float() / 255.0
        out = model.forward_instance(x)
        masks = F.interpolate(out["pred_masks"].float(), size=(ph, pw), mode="bilinear", align_corners=False)[:, :, :h, :w]
        result = postprocess_instances(out["pred_logits"].float(), masks, top_k=max_detections)[0]
        # class-agnostic: one prediction per query, P(some object) x the same mask quality x stability score
        query_logits = masks[0]                                                      # (N, H, W)
        query_masks = query_logits > 0
        quality = (query_logits.sigmoid() * query_masks).flatten(1).sum(1) / (query_masks.flatten(1).sum(1) + 1e-6)
        objectness = out["pred_logits"][0].float().softmax(-1)[:, :-1].sum(-1)      # (N,) = 1 - p(no object)
        stability = stability_score(query_logits)
        result["query_masks"], result["query_scores"] = query_masks, objectness * quality * stability
        result["query_objectness"], result["query_quality"], result["query_stability"] = objectness, quality, stability
        if "pred_iou_logits" in out:                          # the optional mask-IoU head: predicted IoU per query
            result["query_iou"] = out["pred_iou_logits"][0].float().sigmoid()
    finally:
        model.train(was_training)
    return {k: v.cpu() for k, v in result.items()}


def query_predictions(model, image: np.ndarray, max_detections: int = 100) -> dict:
    """Every object query's prediction on one (H, W, 3) uint8 RGB image, as the class-agnostic AP ranks them (CPU):
    ``query_masks`` (N, H, W) bool (logit > 0), ``query_scores`` (N,) = P(some object) x mean mask probability inside
    the mask x stability score, and its three factors ``query_objectness``, ``query_quality``, ``query_stability``
    (plus ``query_iou`` with a mask-IoU head); also the per-(query, class) ``masks``, ``labels``, ``scores`` of
    :func:`predict_instances`. See the module docstring."""
    return _predict(model, image, max_detections)


def predict_instances(model, image: np.ndarray, max_detections: int = 100) -> list[tuple[np.ndarray, int, float]]:
    """Mask2Former's instance inference with the IS branch (``model.forward_instance``), eval mode, no grad.

    The image is zero-padded to a multiple of 32, the stride-4 mask logits are upsampled (bilinear) to the
    padded size and cropped back to (H, W). Class scores are the softmax probabilities without "no object";
    the ``max_detections`` best (query, class) pairs are kept; mask = sigmoid(logit) > 0.5; score = class
    probability x mean mask probability inside the mask (:func:`~isvos_lite.model.instance_head.postprocess_instances`).

    Returns ``[(mask bool (H, W), class index 0..K-1, score), ...]`` by decreasing score.
    """
    result = _predict(model, image, max_detections)
    return [(m.numpy(), int(c), float(s)) for m, c, s in zip(result["masks"], result["labels"], result["scores"])]


SUPPRESSION_METHODS = ("none", "nms", "demote", "matrix")


def suppress_duplicates(masks: torch.Tensor, scores: torch.Tensor, method: str = "none",
                        iou_threshold: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Rescore one image's per-query predictions so that duplicates (masks covering an instance that a
    higher-scored mask already covers) rank later. ``masks`` (n, H, W) bool, ``scores`` (n,).

    - ``none``: scores unchanged;
    - ``nms``: greedy mask NMS in decreasing score: a mask whose IoU with a kept higher-scored mask exceeds
      ``iou_threshold`` is dropped;
    - ``demote``: the same test, the duplicate kept with its score x 0.01 (after every non-duplicate);
    - ``matrix``: Matrix NMS (SOLOv2, linear kernel): s_i x min over higher-scored j of (1 - IoU_ij) / (1 - max
      over k scored above j of IoU_kj).

    Returns ``(keep_index, new_scores)``: the indices into ``masks`` kept, by decreasing new score.
    """
    if method not in SUPPRESSION_METHODS:
        raise ValueError(f"unknown duplicate suppression {method!r}; choose one of {SUPPRESSION_METHODS}")
    if masks.shape[0] != scores.shape[0]:
        raise ValueError(f"masks ({masks.shape[0]}) and scores ({scores.shape[0]}) must have the same length")
    order = scores.argsort(descending=True)
    if method == "none" or len(order) == 0:
        return order, scores[order]
    iou = pairwise_mask_iou(masks[order], masks[order])                          # in score order
    ranked = scores[order].clone()
    if method == "matrix":
        upper = iou.triu(diagonal=1)                                             # [j, i]: j scored above i
        compensate = upper.max(dim=0).values                                     # (n,) max IoU of j with any above it
        decay = ((1 - upper) / (1 - compensate[:, None]).clamp(min=1e-6)).min(dim=0).values
        ranked = ranked * decay.clamp(max=1.0)
        keep = torch.arange(len(order))
    else:
        duplicate = torch.zeros(len(order), dtype=torch.bool)
        for i in range(len(order)):
            if duplicate[i]:
                continue
            later = torch.arange(len(order)) > i
            duplicate |= later & (iou[i] > iou_threshold)
        if method == "nms":
            keep = (~duplicate).nonzero().flatten()
        else:
            ranked = torch.where(duplicate, ranked * 0.01, ranked)
            keep = torch.arange(len(order))
    new_scores = ranked[keep]
    resort = new_scores.argsort(descending=True, stable=True)
    return order[keep][resort], new_scores[resort]


def instance_results(image_id: int, instances, category_ids: list[int], query_index=None,
                     agnostic: bool = False) -> list[dict]:
    """COCO result dicts (RLE segmentation) from ``[(mask, class index, score), ...]``.

    ``category_ids[k]`` is the COCO id of class index k. With ``agnostic`` every result gets category 1
    and, when ``query_index`` is given, each query is kept once (its first = best-scoring pair).
    """
    _, _, mask_utils = require_pycocotools()
    results, seen = [], set()
    for i, (mask, label, score) in enumerate(instances):
        if agnostic and query_index is not None:
            q = int(query_index[i])
            if q in seen:
                continue
            seen.add(q)
        rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        results.append({"image_id": int(image_id), "category_id": 1 if agnostic else int(category_ids[int(label)]),
                        "segmentation": rle, "score": float(score)})
    return results


# --------------------------------------------------------------------------------------
# scoring
# --------------------------------------------------------------------------------------

def agnostic_ground_truth(coco_gt):
    """A copy of the ground truth with one category ("object", id 1), built in memory."""
    COCO, _, _ = require_pycocotools()
    data = copy.deepcopy(coco_gt.dataset)
    for ann in data["annotations"]:
        ann["category_id"] = 1
    data["categories"] = [{"id": 1, "name": "object", "supercategory": "object"}]
    gt = COCO()
    gt.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def coco_percent(value: float):
    """A COCOeval statistic in percent (3 decimals); None where COCOeval reports -1 (nothing to score)."""
    return None if value < 0 else round(float(value) * 100, 3)


def run_cocoeval(coco_gt, results: list[dict], image_ids: list[int]):
    """COCOeval(segm) over ``image_ids``; returns the evaluated COCOeval or None when there is no prediction."""
    _, COCOeval, _ = require_pycocotools()
    if not results:
        return None
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes([dict(r) for r in results])     # loadRes adds keys to the dicts: give it copies
        evaluator = COCOeval(coco_gt, coco_dt, iouType="segm")
        evaluator.params.imgIds = list(image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def evaluate_results(coco_gt, results: list[dict], image_ids: list[int] | None = None,
                     agnostic_results: list[dict] | None = None) -> dict:
    """Standard and class-agnostic COCO mask AP (percent) of COCO result dicts against ``coco_gt`` (a pycocotools COCO).

    ``agnostic_results`` default: ``results`` with every category set to 1. ``image_ids`` default: all images.
    """
    image_ids = sorted(coco_gt.getImgIds()) if image_ids is None else list(image_ids)
    categories = sorted(coco_gt.loadCats(coco_gt.getCatIds()), key=lambda c: c["id"])
    out: dict = {"images": len(image_ids)}
    evaluator = run_cocoeval(coco_gt, results, image_ids)
    has_gt = any(coco_gt.getAnnIds(imgIds=image_ids))
    if evaluator is None:   # no prediction at all: AP 0 wherever there is ground truth
        out.update({name: (0.0 if has_gt else None) for name in STAT_NAMES})
        out["per_class"] = {c["name"]: (0.0 if coco_gt.getAnnIds(imgIds=image_ids, catIds=[c["id"]]) else None)
                            for c in categories}
    else:
        out.update({name: coco_percent(v) for name, v in zip(STAT_NAMES, evaluator.stats)})
        precision = evaluator.eval["precision"]                     # (T, R, K, A, M)
        per_class = {}
        for k, cat_id in enumerate(evaluator.params.catIds):
            p = precision[:, :, k, 0, -1]
            p = p[p > -1]
            name = next(c["name"] for c in categories if c["id"] == cat_id)
            per_class[name] = round(float(p.mean()) * 100, 3) if p.size else None
        out["per_class"] = per_class
    if agnostic_results is None:
        agnostic_results = [dict(r, category_id=1) for r in results]
    agnostic = run_cocoeval(agnostic_ground_truth(coco_gt), agnostic_results, image_ids)
    if agnostic is None:
        for name in ("ap", "ap50", "ap75"):
            out[f"agnostic_{name}"] = 0.0 if has_gt else None
    else:
        for name, v in zip(("ap", "ap50", "ap75"), agnostic.stats[:3]):
            out[f"agnostic_{name}"] = coco_percent(v)
    return out


def load_coco_gt(coco_dir: str | os.PathLike, split: str):
    """(pycocotools COCO of ``coco_dir/annotations/instances_<split>.json``, image folder ``coco_dir/<split>``)."""
    COCO, _, _ = require_pycocotools()
    coco_dir = Path(coco_dir)
    ann_file = coco_dir / "annotations" / f"instances_{split}.json"
    if not ann_file.exists():
        raise FileNotFoundError(f"annotation file {ann_file} does not exist; --coco must be the folder holding "
                                f"annotations/instances_{split}.json and {split}/ (e.g. data/toy/coco, written by "
                                f"`isvos-lite toy-data`)")
    image_dir = coco_dir / split
    if not image_dir.is_dir():
        raise FileNotFoundError(f"image folder {image_dir} does not exist (next to {ann_file})")
    from isvos_lite.data.coco import load_coco_json
    load_coco_json(ann_file)                                          # clear errors for a broken file
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(ann_file))
    return coco_gt, image_dir


def oracle_scores(coco_gt, image_id: int, masks) -> list[float]:
    """The scores a perfect ranker would give these masks: each ground-truth instance's best mask (a greedy one-to-one
    assignment by decreasing IoU, as COCO's matching is) scores 1 + its IoU; every other mask (a duplicate of an
    instance already covered, or a stray) scores its best IoU, so it ranks after all of them."""
    anns = coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=[image_id]))
    if not anns or not masks:
        return [0.0] * len(masks)
    gt = np.stack([coco_gt.annToMask(a).astype(bool) for a in anns])                 # (G, H, W)
    iou = pairwise_mask_iou(torch.from_numpy(np.stack([np.asarray(m, dtype=bool) for m in masks])),
                            torch.from_numpy(gt)).double().numpy()                     # (n, G)
    scores = iou.max(axis=1).tolist()
    free_masks, free_gt = set(range(len(masks))), set(range(len(gt)))
    for flat in np.argsort(-iou, axis=None, kind="stable"):
        i, g = divmod(int(flat), len(gt))
        if iou[i, g] <= 0 or not free_gt:
            break
        if i in free_masks and g in free_gt:
            scores[i] = 1.0 + float(iou[i, g])
            free_masks.discard(i)
            free_gt.discard(g)
    return scores


def score_instance_ap(model, coco_dir: str | os.PathLike, split: str = "val", max_images: int | None = None,
                      progress: bool = True, max_detections: int = 100, diagnose: bool = False,
                      duplicates: str = "demote", duplicate_iou: float = DUPLICATE_IOU) -> dict:
    """Run the IS branch over ``coco_dir/<split>`` and score it with pycocotools (percent; see the module docstring).

    The model's class index k is the k-th category of the annotation file by increasing id (as in
    :class:`~isvos_lite.data.instance_dataset.COCOInstanceDataset`); the class counts must agree.
    ``diagnose``: also the oracle-ranking class-agnostic AP (see the module docstring).
    ``duplicates``, ``duplicate_iou``: how the class-agnostic ranking treats duplicates (:func:`suppress_duplicates`;
    default: demoted above IoU 0.7, chosen on training images, ``docs/experiments/instance_ranking_protocol.md``).
    """
    if duplicates not in SUPPRESSION_METHODS:
        raise ValueError(f"unknown duplicate suppression {duplicates!r}; choose one of {SUPPRESSION_METHODS}")
    if not 0.0 <= duplicate_iou < 1.0:
        raise ValueError(f"duplicate_iou must be in [0, 1), got {duplicate_iou}")
    from isvos_lite.data.palette import read_frame

    coco_gt, image_dir = load_coco_gt(coco_dir, split)
    category_ids = sorted(coco_gt.getCatIds())
    num_classes = getattr(getattr(model, "cfg", None), "num_classes", None)
    if num_classes is not None and num_classes != len(category_ids):
        raise ValueError(f"the model (preset {getattr(model.cfg, 'name', '?')!r}) has {num_classes} classes but "
                         f"{coco_dir} has {len(category_ids)} categories; use a checkpoint trained on these categories")
    image_ids = sorted(coco_gt.getImgIds())
    if max_images is not None:
        if max_images < 1:
            raise ValueError(f"max_images must be >= 1, got {max_images}")
        image_ids = image_ids[:max_images]
    if not image_ids:
        raise ValueError(f"{coco_dir} split {split!r} has no images")
    results, agnostic_results, oracle_results = [], [], []
    iterator = image_ids
    if progress:
        from tqdm.auto import tqdm
        iterator = tqdm(image_ids, desc=f"instance AP ({split})", unit="img")
    for image_id in iterator:
        record = coco_gt.loadImgs([image_id])[0]
        path = image_dir / record["file_name"]
        image = read_frame(path)
        if image.shape[:2] != (int(record["height"]), int(record["width"])):
            raise ValueError(f"image {path} is {image.shape[1]}x{image.shape[0]} but the annotations say "
                             f"{record['width']}x{record['height']}")
        pred = _predict(model, image, max_detections)
        instances = list(zip(pred["masks"].numpy(), pred["labels"].tolist(), pred["scores"].tolist()))
        results += instance_results(image_id, instances, category_ids)
        order, ranked = suppress_duplicates(pred["query_masks"], pred["query_scores"], duplicates, duplicate_iou)
        per_query = [(pred["query_masks"][q].numpy(), 0, float(s))
                     for q, s in zip(order[:max_detections].tolist(), ranked[:max_detections].tolist())]
        agnostic_results += instance_results(image_id, per_query, category_ids, agnostic=True)
        if diagnose:   # every query's mask, ranked as a perfect scorer would rank them
            masks = [m.numpy() for m in pred["query_masks"]]
            scores = oracle_scores(coco_gt, image_id, masks)
            oracle_results += instance_results(image_id, [(m, 0, s) for m, s in zip(masks, scores)],
                                               category_ids, agnostic=True)
    out = evaluate_results(coco_gt, results, image_ids, agnostic_results)
    if diagnose:
        oracle = run_cocoeval(agnostic_ground_truth(coco_gt), oracle_results, image_ids)
        for name, index in (("ap", 0), ("ap50", 1)):
            out[f"oracle_agnostic_{name}"] = (0.0 if oracle is None else coco_percent(oracle.stats[index]))
    out["split"] = split
    return out
