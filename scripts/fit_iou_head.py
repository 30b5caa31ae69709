"""Fit a mask-IoU head alone on a trained IS branch (``docs/experiments/instance_ranking_protocol.md``,
amendment 2).

Loads an instance-stage checkpoint into the same model with ``mask_iou_head=True``, freezes every other weight and
keeps them in eval mode (so its masks and classes do not change), and trains only the head: each query's
predicted IoU against its mask's IoU with the ground-truth instance it overlaps most
(:func:`isvos_lite.train.criterion.mask_iou_targets`), mean squared error, on images of the procedural instance
stream. Writes ``--out`` (.safetensors + .json) atomically; ``isvos-lite instance-ap`` then ranks with the head.

    python scripts/fit_iou_head.py --init runs/table3/instance_xxl/model.safetensors \\
        --out runs/ranking/iou_head/model.safetensors --data data/world --iters 1500 --threads 1

About 0.2 s per iteration at one thread (a forward pass of the frozen branch; only the small head learns).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch
import torch.nn.functional as F


def collate(items: list[dict]) -> tuple[torch.Tensor, list[dict]]:
    return torch.stack([item["image"] for item in items]), [{"labels": it["labels"], "masks": it["masks"]} for it in items]


def main() -> int:
    from safetensors.torch import load_file
    from tqdm.auto import tqdm

    from isvos_lite.checkpoint import read_checkpoint_config, save_checkpoint
    from isvos_lite.data.instance_stream import InstanceStreamConfig, InstanceStreamDataset
    from isvos_lite.model.isvos import ISVOS
    from isvos_lite.train.batches import world_frame_size
    from isvos_lite.train.criterion import mask_iou_targets

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--init", required=True, help="instance-stage checkpoint (.safetensors with its .json)")
    parser.add_argument("--out", required=True, help="where to write the checkpoint with the fitted head (.safetensors)")
    parser.add_argument("--data", default="data/world", help="the teaching world (its world.json gives the frame size)")
    parser.add_argument("--iters", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--crop", type=int, default=160)
    parser.add_argument("--stream-seed", type=int, default=1, help="procedural stream seed (the stage used 0)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    if not str(args.out).endswith(".safetensors"):
        parser.error(f"--out must end in .safetensors, got {args.out}")
    for name in ("iters", "batch_size", "crop", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    cfg, meta = read_checkpoint_config(args.init)
    cfg = dataclasses.replace(cfg, mask_iou_head=True)
    model = ISVOS(cfg)
    state = load_file(str(args.init))
    result = model.load_state_dict(state, strict=False)
    unexpected = list(result.unexpected_keys)
    missing = [k for k in result.missing_keys if ".iou_embed." not in k]
    if missing or unexpected:
        raise ValueError(f"--init {args.init} does not match the model its own JSON describes (preset {cfg.name!r}): "
                         f"missing {missing[:3]}, unexpected {unexpected[:3]}; pass a checkpoint written by "
                         "`isvos-lite train` (e.g. runs/<instance stage>/model.safetensors) with its .json beside it")
    head = model.transformer_decoder.instance_head.iou_embed
    for p in model.parameters():
        p.requires_grad_(False)
    for p in head.parameters():
        p.requires_grad_(True)
    model.eval()                                          # frozen BatchNorm statistics: the masks stay the same

    height, width = world_frame_size(Path(args.data)) or (InstanceStreamConfig.height, InstanceStreamConfig.width)
    stream = InstanceStreamDataset(InstanceStreamConfig(height=height, width=width, crop_size=args.crop,
                                                        scale_jitter=(0.8, 1.25)), seed=args.stream_seed)
    sampler = torch.utils.data.RandomSampler(stream, replacement=True, num_samples=args.iters * args.batch_size,
                                             generator=torch.Generator().manual_seed(args.seed))
    loader = torch.utils.data.DataLoader(stream, batch_size=args.batch_size, sampler=sampler, collate_fn=collate,
                                         num_workers=args.workers)
    optimizer = torch.optim.Adam(head.parameters(), lr=args.lr)
    history = []
    for step, (images, targets) in enumerate(tqdm(loader, total=args.iters, desc="fitting the mask-IoU head"), 1):
        with torch.no_grad():
            out = model.forward_instance(images)
            target = mask_iou_targets(out["pred_masks"], targets)                     # (B, N)
        predicted = head(out["queries"])[..., 0].sigmoid()                            # (B, N)
        loss = F.mse_loss(predicted, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.append(loss.item())
        if step % 100 == 0:
            print(f"[{step}/{args.iters}] mse {sum(history[-100:]) / 100:.4f}", flush=True)
    fit = {"init": str(args.init), "iters": args.iters, "batch_size": args.batch_size, "lr": args.lr,
           "stream_seed": args.stream_seed, "seed": args.seed, "final_mse": sum(history[-100:]) / min(100, len(history))}
    save_checkpoint(model, args.out, meta=dict(meta, iou_head_fit=fit))
    print(json.dumps(fit))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
