"""``isvos-lite instance-ap --checkpoint CKPT --coco DIR [--split val|train|both] [--max-images N] [--json] [--out FILE]``

Measures the IS branch (§3.1, a Mask2Former) as Mask2Former is measured on COCO: its instance inference
on every image of a COCO-format split and the standard mask AP of pycocotools, per class and
class-agnostic (:mod:`isvos_lite.eval.instance_ap`). ``DIR`` holds ``annotations/instances_<split>.json``
and the ``<split>/`` images, e.g. ``data/toy/coco`` of ``isvos-lite toy-data``. ``--split both`` scores
train and val and prints the train - val gap (how much the IS branch overfits its training images).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="CKPT",
                        help="weights (.safetensors with its .json), e.g. checkpoints/lite.safetensors")
    parser.add_argument("--coco", required=True, metavar="DIR",
                        help="folder with annotations/instances_<split>.json and <split>/ images (e.g. data/toy/coco)")
    parser.add_argument("--split", default="val", choices=("val", "train", "both"),
                        help="which split to score; both: train and val and their gap (default: val)")
    parser.add_argument("--max-images", type=int, default=None, metavar="N", help="score only the first N images of each split")
    parser.add_argument("--max-detections", type=int, default=100, metavar="N",
                        help="instances kept per image (Mask2Former: 100)")
    parser.add_argument("--preset", default=None, help="refuse a checkpoint of another preset")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: PyTorch's choice)")
    parser.add_argument("--diagnose", action="store_true",
                        help="also the class-agnostic AP of the same masks ranked perfectly (an oracle: each "
                             "instance's best mask first, by its IoU; duplicates after): tells whether the scores "
                             "or the masks limit the AP")
    parser.add_argument("--duplicates", default="demote", choices=("none", "nms", "demote", "matrix"),
                        help="class-agnostic ranking: what happens to a mask overlapping a higher-scored one by more "
                             "than --duplicate-iou: demote (score x 0.01; default, chosen on training images), nms "
                             "(dropped), matrix (Matrix NMS decay) or none (Mask2Former's plain ranking)")
    parser.add_argument("--duplicate-iou", type=float, default=0.7, metavar="T",
                        help="IoU above which a mask counts as a duplicate (default 0.7; not used by matrix/none)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    parser.add_argument("--out", metavar="FILE", default=None, help="also write the result as JSON to FILE (atomically)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _fmt(value) -> str:
    return "  n/a" if value is None else f"{value:5.1f}"


def format_result(result: dict) -> str:
    lines = [f"{result['split']}: {result['images']} images",
             f"  class-agnostic  AP {_fmt(result['agnostic_ap'])}  AP50 {_fmt(result['agnostic_ap50'])}  "
             f"AP75 {_fmt(result['agnostic_ap75'])}",
             f"  per-class       AP {_fmt(result['ap'])}  AP50 {_fmt(result['ap50'])}  AP75 {_fmt(result['ap75'])}  "
             f"APs {_fmt(result['ap_small'])}  APm {_fmt(result['ap_medium'])}  APl {_fmt(result['ap_large'])}"]
    lines.append("  per class:      " + "  ".join(f"{name} {_fmt(ap)}" for name, ap in result["per_class"].items()))
    if "oracle_agnostic_ap" in result:
        lines.append(f"  oracle ranking  AP {_fmt(result['oracle_agnostic_ap'])}  AP50 {_fmt(result['oracle_agnostic_ap50'])}"
                     "   (class-agnostic, the same masks ranked perfectly: each instance's best mask first)")
    return "\n".join(lines)


def _gap(train: dict, val: dict) -> dict:
    gap = {}
    for key in ("agnostic_ap", "agnostic_ap50", "agnostic_ap75", "ap", "ap50", "ap75"):
        if train.get(key) is not None and val.get(key) is not None:
            gap[key] = round(train[key] - val[key], 3)
    return gap


def run(args) -> int:
    import torch

    from isvos_lite.atomic import atomic_write_text
    from isvos_lite.checkpoint import load_checkpoint, read_checkpoint_config
    from isvos_lite.eval.instance_ap import load_coco_gt, require_pycocotools, score_instance_ap

    require_pycocotools()
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if not 0.0 <= args.duplicate_iou < 1.0:
        raise ValueError(f"--duplicate-iou must be in [0, 1), got {args.duplicate_iou}")
    if args.max_images is not None and args.max_images < 1:
        raise ValueError(f"--max-images must be >= 1, got {args.max_images}")
    splits = ("train", "val") if args.split == "both" else (args.split,)
    for split in splits:                                         # check the data before loading the model
        load_coco_gt(args.coco, split)
    cfg, _ = read_checkpoint_config(args.checkpoint)
    if args.preset is not None and cfg.name != args.preset:
        raise ValueError(f"checkpoint {args.checkpoint} was trained with preset {cfg.name!r}, not {args.preset!r}")
    model = load_checkpoint(args.checkpoint, map_location=args.device, preset=args.preset)

    start = time.perf_counter()
    report: dict = {"checkpoint": str(Path(args.checkpoint)), "preset": cfg.name, "coco": str(Path(args.coco)), "splits": {}}
    for split in splits:
        report["splits"][split] = score_instance_ap(model, args.coco, split=split, max_images=args.max_images, diagnose=args.diagnose,
                                                    progress=not (args.quiet or args.json), max_detections=args.max_detections,
                                                    duplicates=args.duplicates, duplicate_iou=args.duplicate_iou)
    if len(splits) == 2:
        report["train_minus_val"] = _gap(report["splits"]["train"], report["splits"]["val"])
    report["seconds"] = round(time.perf_counter() - start, 2)

    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"instance AP of {args.checkpoint} (preset {cfg.name}) on {args.coco}, COCO mask AP in percent")
        for split in splits:
            print(format_result(report["splits"][split]))
        if "train_minus_val" in report:
            gap = report["train_minus_val"]
            print("train - val gap:  " + "  ".join(f"{k} {v:+.1f}" for k, v in gap.items()))
        print(f"scored in {report['seconds']:.1f} s")
    if args.out:
        atomic_write_text(args.out, json.dumps(report, indent=2))
        if not args.json:
            print(f"wrote {args.out}")
        else:
            print(f"wrote {args.out}", file=sys.stderr)
    return 0
