"""``isvos-lite train``: joint IS + VOS training of a preset, static and/or main stage, resumable (§4.1).

Examples::

    isvos-lite train --preset lite --data data/toy --out runs/lite                 # both stages on the CPU
    isvos-lite train --preset lite --data data/toy --out runs/lite --resume        # continue after a stop
    isvos-lite train --preset lite --data data/toy --out runs/noqe --no-query-enhancement   # Table 3 ablation
    torchrun --nproc_per_node=4 -m isvos_lite.cli train --preset paper --data DAVIS --youtube YTVOS \\
        --coco COCO --static-data STATIC --out runs/paper --device cuda                      # the paper's recipe

Writes ``<out>/metrics.jsonl``, ``<out>/loss_curve.png``, ``<out>/checkpoints/`` (training state) and the trained
model ``<out>/model.safetensors`` + ``<out>/model.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import torch

from isvos_lite.config import get_preset
from isvos_lite.train.config import STAGES, TRAIN_PRESETS, get_train_preset

__all__ = ["add_arguments", "run", "build_configs"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", required=True, choices=sorted(TRAIN_PRESETS),
                        help="training recipe and model size: 'lite' (CPU, teaching world) or 'paper' (GPUs, real data)")
    parser.add_argument("--data", required=True, help="DAVIS-format root (e.g. data/toy from `isvos-lite toy-data`)")
    parser.add_argument("--out", required=True, help="run folder: checkpoints, metrics.jsonl, loss_curve.png, model")
    parser.add_argument("--stage", choices=(*STAGES, "all"), default="all",
                        help="static pretraining, main training, or both in sequence (default all)")
    parser.add_argument("--iters", type=int, default=None,
                        help="iterations of each stage run (the decay / bootstrap schedule is stretched to fit)")
    parser.add_argument("--batch-size", type=int, default=None, help="VOS clips per iteration (all processes)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--init", default=None, help="start from this model checkpoint (.safetensors) instead of random weights")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="training device (default: cuda when available, else cpu)")
    parser.add_argument("--youtube", default=None, help="YouTube-VOS root added to main training (train/meta.json)")
    parser.add_argument("--static-data", default=None,
                        help="folder of images + masks for static pretraining (default: frames of --data's train split)")
    parser.add_argument("--coco", default=None, help="COCO folder for the IS branch (default: DATA/coco)")
    parser.add_argument("--no-query-enhancement", action="store_true", help="ablation: query key from Q_g alone (Table 3)")
    parser.add_argument("--no-multi-path-fusion", action="store_true", help="ablation: decoder without P features (Table 3)")
    parser.add_argument("--instance-every", type=int, default=None, help="an IS step every N iterations (0: no joint IS)")
    parser.add_argument("--val-every", type=int, default=None, help="validation J&F every N iterations (0: never)")
    parser.add_argument("--val-videos", type=int, default=None, help="validation videos scored each time")
    parser.add_argument("--checkpoint-every", type=int, default=None, help="training state every N iterations")
    parser.add_argument("--log-every", type=int, default=None, help="metrics line every N iterations")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader worker processes per training process")
    parser.add_argument("--seed", type=int, default=None, help="random seed (weights, batches, sampling)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch (default: PyTorch's choice)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def build_configs(args: argparse.Namespace):
    """The TrainConfig and ModelConfig described by the command-line options."""
    cfg = get_train_preset(args.preset)
    stages = STAGES if args.stage == "all" else (args.stage,)
    for stage in stages:
        stage_cfg = cfg.stage(stage)
        if args.iters is not None:
            stage_cfg = stage_cfg.with_iterations(args.iters)
        if args.batch_size is not None:
            stage_cfg = dataclasses.replace(stage_cfg, batch_size=args.batch_size)
        cfg = cfg.replace(**{stage: stage_cfg})
    overrides = {"instance_every": args.instance_every, "val_every": args.val_every, "val_videos": args.val_videos,
                 "checkpoint_every": args.checkpoint_every, "log_every": args.log_every,
                 "num_workers": args.workers, "seed": args.seed}
    cfg = cfg.replace(**{k: v for k, v in overrides.items() if v is not None})
    model_cfg = get_preset(cfg.model_preset, query_enhancement=not args.no_query_enhancement,
                           multi_path_fusion=not args.no_multi_path_fusion)
    return cfg, model_cfg, stages


def run(args: argparse.Namespace) -> int:
    from isvos_lite.train.batches import DataSources
    from isvos_lite.train.distributed import DistributedContext
    from isvos_lite.train.trainer import Trainer

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.iters is not None and args.iters < 1:
        raise ValueError(f"--iters must be >= 1, got {args.iters}")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    cfg, model_cfg, stages = build_configs(args)
    sources = DataSources.discover(args.data, youtube=args.youtube, static=args.static_data, coco=args.coco)
    dist_ctx = DistributedContext.from_environment(device)
    try:
        trainer = Trainer(cfg, model_cfg, sources, args.out, plan=stages, device=device, resume=args.resume,
                          init=args.init, progress=not args.quiet, dist_ctx=dist_ctx)
        summary = trainer.run()
    finally:
        dist_ctx.close()
    if dist_ctx.is_main:
        print(json.dumps(summary, indent=2))
    return 0
