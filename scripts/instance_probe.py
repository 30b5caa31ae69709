"""Probes of the IS branch's learning: can it learn, and what has a trained one learnt?

    # train the lite IS branch from scratch for N steps and print its loss terms
    python scripts/instance_probe.py train --data fixed --iters 150    # one fixed batch of 8: can it memorise?
    python scripts/instance_probe.py train --data easy  --iters 300    # one large undistorted shape per image
    python scripts/instance_probe.py train --data stream --iters 400   # the instance stream of the lite recipe

    # what a trained IS branch does on held-out stream images (Hungarian-matched to the ground truth)
    python scripts/instance_probe.py inspect --checkpoint runs/table3/instance/model.safetensors --images 24

``inspect`` prints the class confusion matrix of the matched queries (rows: true class, columns: predicted
class, last column "no object"), the mean objectness 1 - p(no object) of matched and unmatched queries, and the
IoU of each matched query's mask with its instance. Numbers quoted in docs/DESIGN_NOTES.md §2 come from here.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from isvos_lite.data.instance_stream import InstanceStreamConfig, InstanceStreamDataset
from isvos_lite.train.criterion import SetCriterion
from isvos_lite.train.matcher import HungarianMatcher

PROBE_OFFSET = 999_000_000     # stream indices far beyond any training run's (held out in practice)
EASY = dict(min_instances=1, max_instances=1, min_radius=0.2, max_wobble=0.0, max_aspect=1.0)


def batch(dataset: InstanceStreamDataset, start: int, size: int):
    items = [dataset[start + j] for j in range(size)]
    images = torch.stack([item["image"] for item in items])                      # (b, 3, H, W)
    return images, [{"labels": item["labels"], "masks": item["masks"]} for item in items]


def train(args: argparse.Namespace) -> None:
    from isvos_lite.config import get_preset
    from isvos_lite.model.isvos import ISVOS

    torch.manual_seed(args.seed)
    model = ISVOS(get_preset("lite")).train()
    config = InstanceStreamConfig(**(EASY if args.data == "easy" else {}))
    dataset = InstanceStreamDataset(config, seed=args.seed, augment=True)
    criterion = SetCriterion(model.cfg.num_classes, num_points=1024)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    start = time.time()
    for step in range(args.iters):
        images, targets = batch(dataset, 0 if args.data == "fixed" else step * args.batch, args.batch)
        losses = criterion(model.forward_instance(images), targets)
        optimizer.zero_grad()
        losses["loss_is"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 3.0)
        optimizer.step()
        if step % 10 == 0 or step == args.iters - 1:
            print(f"step {step:4d}  ce {losses['loss_ce'].item():.3f}  mask {losses['loss_mask'].item():.3f}  "
                  f"dice {losses['loss_dice'].item():.3f}  ({time.time() - start:.0f} s)", flush=True)


@torch.no_grad()
def inspect(args: argparse.Namespace) -> None:
    from isvos_lite.checkpoint import load_checkpoint

    model = load_checkpoint(args.checkpoint).eval()
    dataset = InstanceStreamDataset(InstanceStreamConfig(), seed=0, augment=True)
    images, targets = batch(dataset, PROBE_OFFSET, args.images)
    out = model.forward_instance(images)
    matches = HungarianMatcher(num_points=4000)(out, targets)
    K = model.cfg.num_classes
    confusion = np.zeros((K, K + 1), dtype=int)
    probs = out["pred_logits"].softmax(-1)                                       # (b, N, K+1)
    matched = torch.zeros(probs.shape[:2], dtype=torch.bool)
    ious = []
    for b, (pred_index, target_index) in enumerate(matches):
        if len(pred_index) == 0:
            continue
        matched[b, pred_index] = True
        predicted = out["pred_logits"][b, pred_index].argmax(-1)
        for p, t in zip(predicted.tolist(), targets[b]["labels"][target_index].tolist()):
            confusion[t, p] += 1
        masks = F.interpolate(out["pred_masks"][b, pred_index][None], size=targets[b]["masks"].shape[-2:],
                              mode="bilinear", align_corners=False)[0] > 0
        truth = targets[b]["masks"][target_index] > 0.5
        ious += ((masks & truth).flatten(1).sum(1) / (masks | truth).flatten(1).sum(1).clamp(min=1)).tolist()
    objectness = 1 - probs[..., -1]
    print("confusion of matched queries (rows: true class, columns: predicted, last: no object)")
    print(confusion)
    print(f"class accuracy of matched queries: {np.trace(confusion[:, :K]) / max(confusion.sum(), 1):.2f} "
          f"(chance {1 / K:.2f})")
    print(f"objectness: matched {objectness[matched].mean():.2f}, unmatched {objectness[~matched].mean():.2f}")
    print(f"matched-mask IoU: mean {np.mean(ious):.2f}, median {np.median(ious):.2f} over {len(ious)} instances")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train the IS branch from scratch and print the loss terms")
    p.add_argument("--data", choices=("fixed", "easy", "stream"), default="stream")
    p.add_argument("--iters", type=int, default=300)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("inspect", help="classes, objectness and mask IoU of a trained IS branch")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--images", type=int, default=24)
    p.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(getattr(args, "threads", 1))
    {"train": train, "inspect": inspect}[args.command](args)


if __name__ == "__main__":
    main()
