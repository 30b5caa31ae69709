"""``isvos-lite train``: instance pretraining + joint IS + VOS training of a preset, resumable (§4.1, Table 4).

Examples::

    isvos-lite train --preset lite --data data/toy --out runs/lite                 # instance, static, main on the CPU
    isvos-lite train --preset lite --data data/toy --out runs/lite --resume        # continue after a stop
    isvos-lite train --preset lite --data data/toy --out runs/noqe --no-query-enhancement   # Table 3 ablation
    isvos-lite train --preset lite --data data/toy --out runs/is --stage instance  # IS pretraining only
    isvos-lite train --preset lite --data data/toy --out runs/vos --stage static main --init runs/is/model.safetensors
    torchrun --nproc_per_node=4 -m isvos_lite.cli train --preset paper --data DAVIS --youtube YTVOS \\
        --coco COCO --static-data STATIC --out runs/paper --device cuda --stage static main \\
        --init-mask2former model_final_3c8ec9.pkl --init-imagenet-value resnet18-f37072fd.pth   # the paper's recipe

Writes ``<out>/metrics.jsonl``, ``<out>/loss_curve.png``, ``<out>/checkpoints/`` (training state) and the trained
model ``<out>/model.safetensors`` + ``<out>/model.json``.

Before anything is built or written, the peak memory of the run is estimated for the chosen preset and settings
(``isvos_lite.train.memory``: weights, gradients, AdamW state and the activations one clip and one instance image
really keep, times the batch sizes); a run that would not fit the machine (or ``--max-memory``) is refused with
settings that fit. ``--instance-batch-size``, ``--crop-size`` and ``--clip-frames`` set the sizes that drive it.
One run at a time writes ``--out``, and a refused run leaves no ``--out`` behind.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
from pathlib import Path

import torch

from isvos_lite.config import get_preset
from isvos_lite.train.config import STAGES, TRAIN_PRESETS, get_train_preset

__all__ = ["add_arguments", "run", "build_configs"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", required=True, choices=sorted(TRAIN_PRESETS),
                        help="training recipe and model size: 'lite' (CPU, teaching world) or 'paper' (GPUs, real data)")
    parser.add_argument("--data", required=True, help="DAVIS-format root (e.g. data/toy from `isvos-lite toy-data`)")
    parser.add_argument("--out", required=True, help="run folder: checkpoints, metrics.jsonl, loss_curve.png, model")
    parser.add_argument("--stage", choices=(*STAGES, "all"), nargs="+", default=["all"],
                        help="stages to run, in recipe order: instance (IS pretraining), static, main, or all (default)")
    parser.add_argument("--iters", type=int, default=None,
                        help="iterations of each stage run (the decay / bootstrap schedule is stretched to fit)")
    for stage in STAGES:
        parser.add_argument(f"--{stage}-iters", type=int, default=None,
                            help=f"iterations of the {stage} stage (overrides --iters for it)")
    parser.add_argument("--batch-size", type=int, default=None, help="VOS clips per iteration (all processes)")
    parser.add_argument("--instance-batch-size", type=int, default=None, metavar="N",
                        help="instance images of the joint IS step (all processes; paper 16, lite 4)")
    parser.add_argument("--crop-size", type=int, default=None, metavar="PX",
                        help="square crop of every stage's clips and images, a multiple of 32 (paper 384, lite 160)")
    parser.add_argument("--clip-frames", type=int, default=None, metavar="T",
                        help="frames per training clip of the static and main stages (paper 3 and 8, lite 3)")
    parser.add_argument("--max-memory", type=float, default=None, metavar="GIB",
                        help="refuse a run whose estimated peak memory exceeds this many GiB (default: the memory "
                             "available now: RAM on a CPU, free GPU memory on CUDA)")
    parser.add_argument("--no-memory-check", action="store_true",
                        help="skip the peak-memory estimate before the first step")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--init", default=None, help="start from this model checkpoint (.safetensors) instead of random weights")
    parser.add_argument("--init-instance", default=None,
                        help="load only the backbone + IS branch of this checkpoint (e.g. an instance-stage run's "
                             "model.safetensors), the analogue of COCO Mask2Former weights; works for every ablation")
    parser.add_argument("--init-imagenet", default=None, metavar="PTH",
                        help="torchvision ImageNet ResNet-50 (resnet50-*.pth) for the shared backbone")
    parser.add_argument("--init-imagenet-value", default=None, metavar="PTH",
                        help="torchvision ImageNet ResNet-18 (resnet18-*.pth) for the value encoder")
    parser.add_argument("--init-mask2former", default=None, metavar="PKL",
                        help="detectron2 Mask2Former R50 COCO instance weights (model_final_3c8ec9.pkl) for the "
                             "backbone, pixel decoder and transformer decoder (the paper's start, §4.1)")
    parser.add_argument("--backbone-norm", choices=("frozen_bn", "bn"), default=None,
                        help="BatchNorm of the ResNets: frozen (needs pretrained weights; the paper preset) or "
                             "trainable (from scratch; the lite preset)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="training device (default: cuda when available, else cpu)")
    parser.add_argument("--youtube", default=None, help="YouTube-VOS root added to main training (train/meta.json)")
    parser.add_argument("--static-data", default=None,
                        help="folder of images + masks for static pretraining (default: frames of --data's train split)")
    parser.add_argument("--coco", default=None, help="COCO folder for the IS branch (default: DATA/coco)")
    parser.add_argument("--no-query-enhancement", action="store_true", help="ablation: query key from Q_g alone (Table 3)")
    parser.add_argument("--no-multi-path-fusion", action="store_true", help="ablation: decoder without P features (Table 3)")
    parser.add_argument("--qe-injection", choices=("cosine", "literal", "identity"), default=None,
                        help="EKE injection: bounded cosine (default), the literal §3.2 dot product (saturates), or identity "
                             "(cosine maps, order-invariant map-weighted query content; an experiment)")
    parser.add_argument("--qe-tau-max", type=float, default=None,
                        help="bound of the bounded injections' logits (lite: 4)")
    parser.add_argument("--qe-tau-init", type=float, default=None,
                        help="starting temperature of the bounded injections (default: half the bound)")
    parser.add_argument("--qe-balance", action="store_true",
                        help="rescale the injected EKE channels to Q_g's spatial deviation (an experiment)")
    parser.add_argument("--mask-iou-head", action="store_true",
                        help="add a mask-IoU head to the IS branch (not in the paper): it learns each query mask's IoU "
                             "and ranks instance masks in instance-ap (scripts/fit_iou_head.py fits one alone)")
    parser.add_argument("--qe-align-weight", type=float, default=None,
                        help="weight of the EKE map-to-mask alignment term (0 disables)")
    parser.add_argument("--instance-data", choices=("coco", "stream"), default=None,
                        help="IS images: a COCO instances JSON (--coco) or the procedural stream (lite default)")
    parser.add_argument("--instance-photos", type=float, default=None, metavar="P",
                        help="stream IS images: probability of a real-photograph texture per instance and of a "
                             "photograph background per image (lite default 0.4; 0: procedural only)")
    parser.add_argument("--instance-every", type=int, default=None, help="an IS step every N iterations (0: no joint IS)")
    parser.add_argument("--val-every", type=int, default=None, help="validation J&F every N iterations (0: never)")
    parser.add_argument("--val-videos", type=int, default=None, help="validation videos scored each time")
    parser.add_argument("--val-instance-images", type=int, default=None,
                        help="held-out instance images scored (mask AP) when validating the instance stage")
    parser.add_argument("--checkpoint-every", type=int, default=None, help="training state every N iterations")
    parser.add_argument("--log-every", type=int, default=None, help="metrics line every N iterations")
    parser.add_argument("--workers", type=int, default=None, help="DataLoader worker processes per training process")
    parser.add_argument("--seed", type=int, default=None, help="random seed (weights, batches, sampling)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch (default: PyTorch's choice)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--tensorboard", action="store_true",
                        help="also write TensorBoard logs to OUT/tensorboard (scalars, validation previews); needs "
                             "the optional extra: pip install -e \".[tensorboard]\"")


def build_configs(args: argparse.Namespace):
    """The TrainConfig and ModelConfig described by the command-line options."""
    cfg = get_train_preset(args.preset)
    chosen = [args.stage] if isinstance(args.stage, str) else list(args.stage)
    stages = STAGES if "all" in chosen else tuple(s for s in STAGES if s in chosen)
    for stage in stages:
        stage_cfg = cfg.stage(stage)
        iters = getattr(args, f"{stage}_iters", None) or args.iters
        if iters is not None:
            if iters < 1:
                raise ValueError(f"--{stage}-iters must be >= 1, got {iters}")
            stage_cfg = stage_cfg.with_iterations(iters)
        if args.batch_size is not None:
            stage_cfg = dataclasses.replace(stage_cfg, batch_size=args.batch_size)
        crop = getattr(args, "crop_size", None)
        if crop is not None:
            if crop < 32 or crop % 32:
                raise ValueError(f"--crop-size must be a positive multiple of 32 (the backbone's stride), got {crop}")
            stage_cfg = dataclasses.replace(stage_cfg, crop_size=crop)
        frames = getattr(args, "clip_frames", None)
        if frames is not None and stage != "instance":
            if frames < 2:
                raise ValueError(f"--clip-frames must be >= 2 (one given frame + at least one predicted), got {frames}")
            stage_cfg = dataclasses.replace(stage_cfg, clip_frames=frames)
        cfg = cfg.replace(**{stage: stage_cfg})
    overrides = {"instance_every": args.instance_every, "val_every": args.val_every, "val_videos": args.val_videos,
                 "checkpoint_every": args.checkpoint_every,
                 "val_instance_images": args.val_instance_images, "log_every": args.log_every,
                 "num_workers": args.workers, "seed": args.seed, "instance_data": args.instance_data,
                 "qe_align_weight": args.qe_align_weight, "instance_photos": args.instance_photos}
    if getattr(args, "instance_batch_size", None) is not None:
        if args.instance_batch_size < 1:
            raise ValueError(f"--instance-batch-size must be >= 1 (--instance-every 0 drops the joint IS step), got "
                             f"{args.instance_batch_size}")
        overrides["instance_batch_size"] = args.instance_batch_size
    cfg = cfg.replace(**{k: v for k, v in overrides.items() if v is not None})
    model_overrides = {"query_enhancement": not args.no_query_enhancement,
                       "multi_path_fusion": not args.no_multi_path_fusion}
    if args.qe_injection is not None:
        model_overrides["qe_injection"] = args.qe_injection
    if args.qe_tau_max is not None:
        model_overrides["qe_tau_max"] = args.qe_tau_max
    if args.qe_tau_init is not None:
        model_overrides["qe_tau_init"] = args.qe_tau_init
    if args.qe_balance:
        model_overrides["qe_balance"] = True
    if getattr(args, "mask_iou_head", False):
        model_overrides["mask_iou_head"] = True
    if getattr(args, "backbone_norm", None) is not None:
        model_overrides["backbone_norm"] = args.backbone_norm
    model_cfg = get_preset(cfg.model_preset, **model_overrides)
    return cfg, model_cfg, stages


def run(args: argparse.Namespace) -> int:
    from isvos_lite.train.batches import DataSources
    from isvos_lite.train.distributed import DistributedContext
    from isvos_lite.outputs import check_apart, output_lock, remove_if_empty
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
    check_apart(args.out, "--out", {"--data": args.data, "--youtube": args.youtube,
                                    "--static-data": args.static_data, "--coco": args.coco})
    if not args.no_memory_check:
        check_memory(cfg, model_cfg, stages, device, args)
    out = Path(args.out)
    existed = out.exists()
    dist_ctx = DistributedContext.from_environment(device)
    try:
        with output_lock(out, "train") if dist_ctx.is_main else contextlib.nullcontext():
            trainer = Trainer(cfg, model_cfg, sources, args.out, plan=stages, device=device, resume=args.resume,
                              init=args.init, progress=not args.quiet, dist_ctx=dist_ctx,
                              init_instance=args.init_instance, init_imagenet=args.init_imagenet,
                              init_imagenet_value=args.init_imagenet_value, init_mask2former=args.init_mask2former,
                              tensorboard=args.tensorboard)
            summary = trainer.run()
    except BaseException:
        if not existed and dist_ctx.is_main:
            remove_if_empty(out)                    # a refused run leaves no empty --out behind
        raise
    finally:
        dist_ctx.close()
    if dist_ctx.is_main:
        print(json.dumps(summary, indent=2))
    return 0


def check_memory(cfg, model_cfg, stages, device: str, args) -> None:
    """Estimate the run's peak memory (to stderr) and refuse it, with settings that fit, when it cannot fit."""
    from isvos_lite.train.memory import GIB, available_memory, estimate_training_memory, fitting_settings

    estimate = estimate_training_memory(cfg, model_cfg, stages, device=device)
    limit = int(args.max_memory * GIB) if args.max_memory is not None else available_memory(device)
    where = f"--max-memory {args.max_memory:g}" if args.max_memory is not None else (
        "the free GPU memory" if device.startswith("cuda") else "the memory available now")
    print(f"estimated peak memory: {estimate.describe()}; limit {limit / GIB:.1f} GiB ({where})", file=sys.stderr)
    if estimate.peak_bytes <= limit:
        return
    stage_cfg = cfg.stage(estimate.stage)
    current = (f"--batch-size {stage_cfg.batch_size} --instance-batch-size {cfg.instance_batch_size}"
               f"{'' if cfg.instance_every else ' --instance-every 0'} --crop-size {stage_cfg.crop_size}"
               f" --clip-frames {stage_cfg.clip_frames}")
    proposal = fitting_settings(estimate, cfg, stages, limit)
    if proposal is None:
        raise ValueError(f"estimated peak memory {estimate.peak_bytes / GIB:.1f} GiB exceeds {limit / GIB:.1f} GiB "
                         f"({where}) with {current}; the weights, gradients and optimiser state alone need "
                         f"{(estimate.peak_bytes - estimate.parts['activations'] - estimate.parts['backward margin']) / GIB:.1f} GiB, so no batch fits: use a "
                         f"machine with more memory or a smaller --preset (or --no-memory-check to try anyway)")
    settings, peak = proposal
    suggestion = " ".join(f"{k} {v}" for k, v in settings.items())
    raise ValueError(f"estimated peak memory {estimate.peak_bytes / GIB:.1f} GiB exceeds {limit / GIB:.1f} GiB "
                     f"({where}) with {current}. Settings that fit (about {peak / GIB:.1f} GiB), try: {suggestion} "
                     f"(or --no-memory-check to try anyway)")
