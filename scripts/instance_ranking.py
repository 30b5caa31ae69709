"""Score duplicate-suppression candidates for the IS branch's class-agnostic ranking.

Protocol: ``docs/experiments/instance_ranking_protocol.md``. One model pass per image; every candidate ranks the
same per-query masks (``isvos_lite.eval.instance_ap.suppress_duplicates``) and is scored with pycocotools.

    python scripts/instance_ranking.py --checkpoint runs/table3/instance_xxl/model.safetensors \\
        --coco data/world/coco --split train --max-images 400 [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def _quality(p):
    return p["query_objectness"] * p["query_quality"]


def _quality_stability(p):
    return p["query_objectness"] * p["query_quality"] * p["query_stability"]


# each candidate: (name, score of every query, duplicate suppression, its IoU threshold)
CANDIDATE_SETS = {
    # the protocol: duplicate suppression, the score P(some object) x mean probability inside the mask
    "duplicates": (("none", _quality, "none", 0.0), ("nms-0.5", _quality, "nms", 0.5),
                   ("nms-0.7", _quality, "nms", 0.7), ("demote-0.5", _quality, "demote", 0.5),
                   ("demote-0.7", _quality, "demote", 0.7), ("matrix", _quality, "matrix", 0.0)),
    # amendment 1: the score's mask-quality factor, duplicates demoted at IoU 0.7
    "scores": (("quality", _quality, "demote", 0.7),
               ("stability", lambda p: p["query_objectness"] * p["query_stability"], "demote", 0.7),
               ("quality×stability", _quality_stability, "demote", 0.7)),
    # amendment 2: a checkpoint with a mask-IoU head (scripts/fit_iou_head.py)
    "iou-scores": (("quality×stability", _quality_stability, "demote", 0.7),
                   ("objectness×iou", lambda p: p["query_objectness"] * p["query_iou"], "demote", 0.7),
                   ("objectness×iou×stability", lambda p: p["query_objectness"] * p["query_iou"] * p["query_stability"],
                    "demote", 0.7)),
}

def main() -> int:
    from tqdm.auto import tqdm

    from isvos_lite.atomic import atomic_write_text
    from isvos_lite.checkpoint import load_checkpoint
    from isvos_lite.data.palette import read_frame
    from isvos_lite.eval.instance_ap import (agnostic_ground_truth, coco_percent, instance_results, load_coco_gt,
                                             query_predictions, run_cocoeval, suppress_duplicates)

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--coco", required=True)
    parser.add_argument("--split", default="train", choices=("train", "val"))
    parser.add_argument("--max-images", type=int, default=400)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    parser.add_argument("--scores", dest="candidates", action="store_const", const="scores", default="duplicates",
                        help="score amendment 1's candidates (mask-quality factors, duplicates demoted at 0.7) "
                             "instead of the duplicate-suppression candidates")
    parser.add_argument("--iou-scores", dest="candidates", action="store_const", const="iou-scores",
                        help="score amendment 2's candidates (a checkpoint with a mask-IoU head)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    coco_gt, image_dir = load_coco_gt(args.coco, args.split)
    image_ids = sorted(coco_gt.getImgIds())[:args.max_images]
    model = load_checkpoint(args.checkpoint, map_location="cpu")
    candidates = CANDIDATE_SETS[args.candidates]
    results = {name: [] for name, _, _, _ in candidates}
    start = time.perf_counter()
    for image_id in tqdm(image_ids, desc=f"ranking candidates ({args.split})", unit="img"):
        record = coco_gt.loadImgs([image_id])[0]
        pred = query_predictions(model, read_frame(image_dir / record["file_name"]))
        masks = pred["query_masks"]
        for name, score, method, threshold in candidates:
            keep, new_scores = suppress_duplicates(masks, score(pred), method, threshold)
            results[name] += instance_results(image_id, [(masks[q].numpy(), 0, float(s))
                                                         for q, s in zip(keep.tolist(), new_scores.tolist())],
                                              [1], agnostic=True)
    gt = agnostic_ground_truth(coco_gt)
    report = {"checkpoint": args.checkpoint, "split": args.split, "images": len(image_ids), "candidates": {}}
    for name, _, _, _ in candidates:
        ev = run_cocoeval(gt, results[name], image_ids)
        report["candidates"][name] = {k: coco_percent(ev.stats[i]) for k, i in (("ap", 0), ("ap50", 1), ("ap75", 2))}
        print(f"{name:17s} class-agnostic AP {report['candidates'][name]['ap']:5.1f}  "
              f"AP50 {report['candidates'][name]['ap50']:5.1f}  AP75 {report['candidates'][name]['ap75']:5.1f}")
    report["seconds"] = round(time.perf_counter() - start, 1)
    if args.out:
        atomic_write_text(args.out, json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
