"""How good are the instance branch's proposals as a way to start a video? (isvos_lite.proposals)

For every video of a DAVIS-layout split, on its first frame:

- **best IoU**: for each true object, the mask IoU of the best of the ``--top-k`` proposals (what a user could get
  by choosing the right proposal);
- **clicked IoU**: the IoU of the proposal that a click on the object picks (the click at the object's pixel
  farthest from its boundary, as a user would click its middle); a refused click (on no proposal) or two objects
  picking one proposal counts as a failed start;
- **J&F from the click vs from the mask**: the video segmented from the clicked proposals and from the true
  first-frame mask (the benchmark's J&F: frames 1 .. T-2, per object, then averaged), on the videos where every
  click was accepted.

Prints one line per video and the means.

    python scripts/proposal_quality.py --checkpoint checkpoints/lite.safetensors --davis data/world --split val
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from isvos_lite.atomic import atomic_write_text  # noqa: E402
from isvos_lite.proposals import DEFAULT_TOP_K, pick_by_clicks, propose  # noqa: E402
from isvos_lite.viz.proposals import label_point  # noqa: E402


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def benchmark_jf(gt: np.ndarray, pred: np.ndarray, object_ids: list[int]) -> float:
    """The DAVIS J&F (percent) of one video: per object the mean over frames 1 .. T-2 of J and of F, then averaged."""
    from isvos_lite.eval.scorer import per_frame_scores

    scores = per_frame_scores(gt, pred.astype(gt.dtype), object_ids=object_ids)
    inner = slice(1, -1) if len(gt) > 2 else slice(None)
    return 100 * float(np.mean([(s["J"][inner].mean() + s["F"][inner].mean()) / 2 for s in scores.values()]))


def measure_video(model, seq, top_k: int | None, track: bool = True, **segmenter_kwargs) -> dict:
    from isvos_lite.inference import segment_video

    frame = seq.read_frame(0)
    truth = seq.read_given_mask(0)
    objects = [int(i) for i in np.unique(truth) if i != 0]
    proposals = propose(model, frame, top_k=top_k)
    best = [max((mask_iou(p.mask, truth == o) for p in proposals), default=0.0) for o in objects]
    clicks = [label_point(truth == o) for o in objects]
    row = {"video": seq.name, "objects": len(objects), "proposals": len(proposals), "best_iou": best,
           "clicked_iou": None, "refused": None, "jf_click": None, "jf_mask": None}
    try:
        picks = pick_by_clicks(proposals, clicks)
    except ValueError as err:
        row["refused"] = str(err)
    else:
        row["clicked_iou"] = [mask_iou(p.proposal.mask, truth == o) for p, o in zip(picks, objects)]
    if track:
        frames = [seq.read_frame(t) for t in range(len(seq))]
        gt = np.stack([seq.read_gt(t) for t in range(len(seq))])
        from_mask = segment_video(model, frames, truth, progress=False, **segmenter_kwargs)
        row["jf_mask"] = benchmark_jf(gt, np.stack(from_mask), objects)
        if row["refused"] is None:
            click_mask = picks.to_mask()
            relabel = np.zeros(256, np.uint8)                    # click i -> the true id of object i
            relabel[1: len(objects) + 1] = objects
            from_click = segment_video(model, frames, relabel[click_mask], progress=False, **segmenter_kwargs)
            row["jf_click"] = benchmark_jf(gt, np.stack(from_click), objects)
    return row


def summarize(rows: list[dict]) -> dict:
    best = [v for r in rows for v in r["best_iou"]]
    accepted = [r for r in rows if r["refused"] is None]
    clicked = [v for r in accepted for v in r["clicked_iou"]]
    tracked = [r for r in accepted if r["jf_click"] is not None]
    out = {"videos": len(rows), "objects": len(best),
           "mean_best_iou": float(np.mean(best)) if best else None,
           "best_iou_at_least_0.5": float(np.mean(np.array(best) >= 0.5)) if best else None,
           "videos_all_clicks_accepted": len(accepted),
           "mean_clicked_iou": float(np.mean(clicked)) if clicked else None}
    if tracked:
        out["mean_jf_click"] = float(np.mean([r["jf_click"] for r in tracked]))
        out["mean_jf_mask_same_videos"] = float(np.mean([r["jf_mask"] for r in tracked]))
    with_mask = [r["jf_mask"] for r in rows if r["jf_mask"] is not None]
    if with_mask:
        out["mean_jf_mask_all_videos"] = float(np.mean(with_mask))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="checkpoints/lite.safetensors", metavar="CKPT",
                        help="any checkpoint (an instance-stage one measures the proposals only: add --no-track)")
    parser.add_argument("--davis", default="data/world", metavar="ROOT", help="a DAVIS-layout dataset root")
    parser.add_argument("--split", default="val", help="split name (ImageSets/2017/<split>.txt)")
    parser.add_argument("--top-k", type=int, default=DEFAULT_TOP_K, help="proposals kept per frame (0 = all)")
    parser.add_argument("--max-videos", type=int, default=None, metavar="N", help="only the first N videos")
    parser.add_argument("--no-track", action="store_true", help="proposal IoUs only, no video segmentation")
    parser.add_argument("--no-amp", action="store_true", help="segment in fp32 (default: the segmenter's default)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", metavar="FILE", default=None, help="also write every row and the means as JSON")
    args = parser.parse_args(argv)

    from isvos_lite.checkpoint import load_checkpoint
    from isvos_lite.data.sequences import davis_sequences
    from isvos_lite.threads import use_threads

    print(use_threads(args.threads))
    if args.top_k < 0:
        parser.error("--top-k must be >= 0 (0 = all proposals)")
    model = load_checkpoint(args.checkpoint)
    sequences = davis_sequences(args.davis, args.split)[: args.max_videos]
    segmenter_kwargs = {"amp": False} if args.no_amp else {}
    rows, start = [], time.perf_counter()
    print(f"{'video':>16} {'obj':>3}  best IoU per object        clicked IoU per object     J&F click  J&F mask")
    for seq in sequences:
        row = measure_video(model, seq, args.top_k or None, track=not args.no_track, **segmenter_kwargs)
        rows.append(row)
        fmt = lambda values: " ".join(f"{v:.2f}" for v in values) if values is not None else "refused"  # noqa: E731
        jf = lambda v: f"{v:9.1f}" if v is not None else f"{'-':>9}"  # noqa: E731
        print(f"{seq.name:>16} {row['objects']:3d}  {fmt(row['best_iou']):<26} {fmt(row['clicked_iou']):<26} "
              f"{jf(row['jf_click'])} {jf(row['jf_mask'])}", flush=True)
    summary = summarize(rows)
    print(f"\n{args.checkpoint} on {args.davis} {args.split}: {summary['videos']} videos, {summary['objects']} "
          f"first-frame objects, top {args.top_k or 'all'} proposals ({time.perf_counter() - start:.0f} s)")
    print(f"  best proposal's mask IoU with each true object: mean {summary['mean_best_iou']:.3f} "
          f"({100 * summary['best_iou_at_least_0.5']:.0f} % of objects >= 0.5)")
    print(f"  clicks accepted on {summary['videos_all_clicks_accepted']} of {summary['videos']} videos; "
          f"the clicked proposal's IoU: mean {summary['mean_clicked_iou']:.3f}" if summary["mean_clicked_iou"] is not None
          else "  no video had every click accepted")
    if "mean_jf_click" in summary:
        print(f"  J&F from the clicks {summary['mean_jf_click']:.1f} vs from the true mask "
              f"{summary['mean_jf_mask_same_videos']:.1f} on those {summary['videos_all_clicks_accepted']} videos "
              f"(from the true mask on all videos: {summary['mean_jf_mask_all_videos']:.1f})")
    if args.json:
        atomic_write_text(Path(args.json), json.dumps({"checkpoint": args.checkpoint, "split": args.split,
                                                       "top_k": args.top_k, "summary": summary, "rows": rows}, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
