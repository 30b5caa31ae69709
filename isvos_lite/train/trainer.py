"""The trainer: instance pretraining, then joint IS + VOS training in two stages, resumable, on CPU, one GPU or
many (§4.1 "Training", Table 4).

An ``instance``-stage iteration is step 2 below alone (backbone + pixel decoder + transformer decoder on IS images:
the analogue of the COCO-pretrained Mask2Former the paper starts from). A ``static`` / ``main`` iteration:

1. a batch of VOS clips → ``model.forward_clip`` (frame 0 given, frames 1..T−1 predicted from memory) →
   ``VOSLoss`` (bootstrapped CE + dice on the aggregated logits);
2. a batch of COCO-format images → ``model.forward_instance`` → ``SetCriterion`` (Mask2Former's matched
   CE + mask BCE + dice, deep supervision) — "the IS branch and VOS branch are jointly trained with different
   supervisory signals" (§4.1);
3. loss = loss_vos + instance_weight · loss_is (+ qe_align_weight · the EKE's map-to-mask alignment term, see
   ``isvos_lite.model.key_encoder``) → backward → clip the gradient norm → AdamW step.

Stages run in order (``instance``, ``static``, ``main``), each with a fresh optimiser and its own step-decay schedule; the
model carries over. The parameters that came from Mask2Former (``instance_lr_modules``; ``train/optimizer.py``) get
``instance_lr_scale`` × the learning rate in the static and main stages (the full rate in the instance stage). Everything random in a step is seeded from (seed, stage, step, process), and the batches are
built the same way (``batches.StepBatches``), so ``--resume`` continues exactly: the next step's loss equals that
of an uninterrupted run.

Feedback: a tqdm bar with ETA, ``metrics.jsonl`` + ``loss_curve.png`` (``feedback``), validation J&F every
``val_every`` steps (``validation``). Checkpoints: ``checkpoint`` (atomic, last two kept); the trained model is
also written as ``<out>/model.safetensors`` (+ ``.json``) at the end of every stage, loadable with
``isvos_lite.checkpoint.load_checkpoint``.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from isvos_lite.checkpoint import load_checkpoint, load_instance_branch, read_checkpoint_config, save_checkpoint
from isvos_lite.config import ModelConfig
from isvos_lite.model.isvos import ISVOS
from isvos_lite.train.batches import DataSources, StepBatches, build_clip_dataset, build_instance_dataset, step_seed
from isvos_lite.train.checkpoint import (
    capture_rng_state,
    latest_checkpoint_dir,
    load_training_checkpoint,
    read_training_state,
    restore_rng_state,
    save_training_checkpoint,
)
from isvos_lite.train.config import STAGES, TrainConfig, train_config_from_dict
from isvos_lite.train.criterion import SetCriterion
from isvos_lite.train.distributed import DistributedContext
from isvos_lite.train.feedback import MetricsLog, plot_loss_curves
from isvos_lite.train.losses import VOSLoss
from isvos_lite.train.optimizer import build_optimizer, set_learning_rate
from isvos_lite.train.pretrained import check_frozen_bn_initialised, import_pretrained
from isvos_lite.train.validation import describe_validation, validate_instance_ap, validate_jf, validate_qe_health

__all__ = ["JointObjective", "build_optimizer", "freeze_batchnorm", "Trainer", "TrainingDiverged",
           "INSTANCE_BRANCH_MODULES", "RECIPE_FIELDS"]

# the IS branch proper (the lite recipe's 0.1x group); which modules train at 0.1x is TrainConfig.instance_lr_modules
INSTANCE_BRANCH_MODULES = ("pixel_decoder", "transformer_decoder")

# TrainConfig fields that define the optimisation itself: a resumed run must use the same values
RECIPE_FIELDS = ("model_preset", "instance", "static", "main", "weight_decay", "instance_lr_scale",
                 "instance_lr_modules", "offset_lr_scale", "decay_all_parameters", "grad_clip",
                 "freeze_batchnorm", "instance_batch_size", "instance_every", "instance_weight", "num_points", "seed",
                 "instance_data", "qe_align_weight", "instance_photos")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left as it was."""


# --- the objective -----------------------------------------------------------------------------

class JointObjective(nn.Module):
    """Model + both losses as one module, so one ``forward`` (and one DDP gradient reduction) covers the step."""

    def __init__(self, model: ISVOS, vos_loss: VOSLoss, criterion: SetCriterion, instance_weight: float,
                 qe_align_weight: float = 0.0):
        super().__init__()
        self.model = model
        self.vos_loss = vos_loss
        self.criterion = criterion
        self.instance_weight = instance_weight
        self.qe_align_weight = qe_align_weight

    def forward(self, frames: torch.Tensor | None, masks: torch.Tensor | None, labels: torch.Tensor | None,
                selector: torch.Tensor | None, step: int, instance_images: torch.Tensor | None = None,
                instance_targets: list[dict] | None = None) -> dict:
        """frames (B, T, 3, H, W), masks (B, T, O, H, W), labels (B, T, H, W), selector (B, O) → named losses.

        ``frames=None`` (the instance stage): the IS loss alone, at weight 1.
        """
        if frames is None:
            if instance_images is None:
                raise ValueError("JointObjective needs VOS clips, IS images or both; got neither")
            instance = self.model.forward_instance(instance_images)
            is_losses = self.criterion(instance, instance_targets)
            losses = {(k if k == "loss_is" else f"is_{k}"): v for k, v in is_losses.items()}
            losses["loss"] = is_losses["loss_is"]
            return losses
        clip = self.model.forward_clip(frames, masks[:, 0], selector)              # logits (B, T-1, O+1, H, W)
        losses = self.vos_loss(clip["logits"], labels[:, 1:], selector, step)
        losses["loss"] = losses["loss_vos"]
        if clip.get("qe_align") is not None:
            losses["loss_qe_align"] = clip["qe_align"]
            if self.qe_align_weight:
                losses["loss"] = losses["loss"] + self.qe_align_weight * clip["qe_align"]
        if instance_images is not None:
            instance = self.model.forward_instance(instance_images)                # pred_logits, pred_masks, aux
            is_losses = self.criterion(instance, instance_targets)
            # the IS terms share names with the VOS ones (loss_ce, loss_dice): log them as is_loss_ce, ...
            losses.update({(k if k == "loss_is" else f"is_{k}"): v for k, v in is_losses.items()})
            losses["loss"] = losses["loss"] + self.instance_weight * is_losses["loss_is"]
        return losses


def freeze_batchnorm(model: nn.Module) -> None:
    """Put every BatchNorm layer in eval mode: running statistics are used and not updated (STCN / XMem)."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


# --- the trainer -------------------------------------------------------------------------------

class Trainer:
    """Runs the stages of ``plan`` (a subset of ("instance", "static", "main"), in order) and writes everything under ``out_dir``.

    ``resume=True`` continues from ``<out_dir>/checkpoints/latest.json``; ``init`` starts from a model
    checkpoint (e.g. the result of a static stage) instead of random weights; ``init_instance`` loads only the
    backbone and IS branch of a checkpoint (e.g. the result of an ``instance`` stage) into any VOS variant;
    ``init_imagenet`` / ``init_imagenet_value`` / ``init_mask2former`` import the public ImageNet and Mask2Former
    files (``train/pretrained.py``), and a frozen-BatchNorm model that nothing initialises is refused. ``on_step_end(stage, step, losses)``
    is called after every step (the tests use it to interrupt a run).
    """

    def __init__(self, cfg: TrainConfig, model_cfg: ModelConfig, sources: DataSources, out_dir: str | Path,
                 plan: tuple[str, ...] = STAGES, device: str = "cpu", resume: bool = False,
                 init: str | Path | None = None, progress: bool = True, on_step_end=None,
                 dist_ctx: DistributedContext | None = None, init_instance: str | Path | None = None,
                 init_imagenet: str | Path | None = None, init_imagenet_value: str | Path | None = None,
                 init_mask2former: str | Path | None = None, tensorboard: bool = False):
        unknown = [s for s in plan if s not in STAGES]
        if not plan or unknown:
            raise ValueError(f"stages must be among {STAGES}, got {list(plan)}")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
        self.cfg, self.model_cfg, self.sources = cfg, model_cfg, sources
        self.out_dir = Path(out_dir)
        self.plan = tuple(s for s in STAGES if s in plan)
        self.dist = dist_ctx or DistributedContext()
        self.device = self.dist.device_for(device)
        self.progress = progress and self.dist.is_main
        self.on_step_end = on_step_end
        self.log = MetricsLog(self.out_dir) if self.dist.is_main else None
        self.clips_per_process = {s: self.dist.per_process(cfg.stage(s).batch_size, f"{s} batch_size") for s in self.plan}
        self.instances_per_process = self.dist.per_process(cfg.instance_batch_size, "instance_batch_size")
        # in the instance stage, the stage's batch_size counts IS images
        self.stage_instances_per_process = {s: (self.clips_per_process[s] if s == "instance" else self.instances_per_process)
                                            for s in self.plan}

        torch.manual_seed(cfg.seed)                         # the initial weights: the same on every process
        self.model = ISVOS(model_cfg).to(self.device)
        self.start_stage, self.start_step, self.resume_state = self.plan[0], 0, None
        if resume:
            self._load_resume_state()
        elif latest_checkpoint_dir(self.out_dir) is not None:
            raise ValueError(f"{self.out_dir} already holds a training run; pass --resume to continue it "
                             "or choose another --out")
        elif init is not None:
            load_checkpoint(init, map_location=self.device, model=self.model)
        if init_instance is not None and not resume:
            load_instance_branch(init_instance, self.model, map_location=self.device)
        if not resume:      # the public pretrained files (train/pretrained.py); frozen BN must not start random
            check_frozen_bn_initialised(
                model_cfg, backbone_initialised=any(x is not None for x in (init, init_instance, init_imagenet,
                                                                             init_mask2former)),
                value_initialised=init is not None or init_imagenet_value is not None)
            import_pretrained(self.model, init_imagenet, init_imagenet_value, init_mask2former,
                              verbose=self.dist.is_main)

        self._instance_datasets: dict[tuple, object] = {}
        if cfg.instance_every or "instance" in self.plan:   # fail early if the categories do not fit the model
            self._instance_dataset(self.plan[0])
        self.vos_loss = VOSLoss()
        self.criterion = SetCriterion(model_cfg.num_classes, num_points=cfg.num_points)
        objective = JointObjective(self.model, self.vos_loss, self.criterion, cfg.instance_weight,
                                   cfg.qe_align_weight).to(self.device)
        self.objective = objective
        if self.dist.is_distributed:
            # find_unused_parameters: with instance_every > 1 (or an ablation switch) some parameters skip a step
            self.objective = DistributedDataParallel(
                objective, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True)
        self.amp_dtype = None
        if cfg.amp and self.device.type == "cuda":
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        # the log's "iteration" counts through the stages of this run's plan (e.g. static, then main); a stage the
        # plan skips (the paper's instance stage, replaced by imported Mask2Former weights) adds nothing
        self.iteration_offset = {s: sum(cfg.stage(p).iterations for p in STAGES[:i] if p in self.plan)
                                 for i, s in enumerate(STAGES)}
        # optional TensorBoard mirror of metrics.jsonl (train/tensorboard.py); events after a resume point are dropped
        self.tensorboard = None
        if tensorboard and self.dist.is_main:
            from isvos_lite.train.tensorboard import TensorBoardLog
            self.tensorboard = TensorBoardLog(self.out_dir, purge_step=self.iteration_offset[self.start_stage]
                                              + self.start_step + 1 if resume else None)

    def _instance_dataset(self, stage: str):
        """IS images at the stage's crop size (built once per size), or None without joint IS training."""
        if not self.cfg.instance_every and stage != "instance":
            return None
        stage_cfg = self.cfg.stage(stage)
        key = (stage_cfg.crop_size, stage_cfg.scale_jitter)
        if key not in self._instance_datasets:
            self._instance_datasets[key] = build_instance_dataset(self.sources, stage_cfg, self.model_cfg.num_classes,
                                                                  self.cfg.instance_data, self.cfg.seed,
                                                                  photos=self.cfg.instance_photos)
        return self._instance_datasets[key]

    # -- resume ----------------------------------------------------------------------------------
    def _load_resume_state(self) -> None:
        """Check that the run in ``out_dir`` is this one (preset, architecture, stages, recipe), then load it."""
        folder = latest_checkpoint_dir(self.out_dir)
        if folder is None:
            raise FileNotFoundError(f"--resume: {self.out_dir / 'checkpoints' / 'latest.json'} does not exist, so there is "
                                    "nothing to resume; run without --resume to start training")
        state = read_training_state(folder, map_location=self.device)
        saved_cfg = train_config_from_dict(state["train_config"])
        if saved_cfg.name != self.cfg.name:
            raise ValueError(f"--resume: {self.out_dir} is a run of preset {saved_cfg.name!r}, not {self.cfg.name!r}; "
                             f"pass --preset {saved_cfg.name} or choose another --out")
        saved_model_cfg, _ = read_checkpoint_config(folder / "model.safetensors")
        if saved_model_cfg.to_dict() != self.model_cfg.to_dict():
            differing = sorted(k for k, v in self.model_cfg.to_dict().items() if saved_model_cfg.to_dict().get(k) != v)
            raise ValueError(f"--resume: {self.out_dir} was trained with another architecture ({', '.join(differing)} "
                             "differ); use the same --preset and ablation switches, or another --out")
        stage, step = state["stage"], int(state["step"])
        if stage not in self.plan:
            raise ValueError(f"--resume: the last checkpoint is from stage {stage!r}, which is not in --stage "
                             f"{'/'.join(self.plan)}; pass --stage {stage} or --stage all")
        saved, requested = saved_cfg.to_dict(), self.cfg.to_dict()
        differing = [k for k in RECIPE_FIELDS if saved[k] != requested[k]]
        if differing:
            raise ValueError(f"--resume: {self.out_dir} was trained with different settings ({', '.join(differing)}); "
                             "resume with the same options (e.g. the same --iters) or choose another --out")
        if state["world_size"] != self.dist.world_size:
            raise ValueError(f"--resume: the run used {state['world_size']} processes, now {self.dist.world_size}; "
                             "resume with the same number of processes")
        load_training_checkpoint(folder, self.model, map_location=self.device)
        self.start_stage, self.start_step, self.resume_state = stage, step, state
        self.model.train()

    # -- one step --------------------------------------------------------------------------------
    def _to_device(self, batch: dict) -> dict:
        moved = {k: (batch[k].to(self.device, non_blocking=True) if batch[k] is not None else None)
                 for k in ("frames", "masks", "labels", "selector")}
        moved["instance_images"] = moved["instance_targets"] = None
        if batch["instance"] is not None:
            images, targets = batch["instance"]
            moved["instance_images"] = images.to(self.device, non_blocking=True)
            moved["instance_targets"] = [{"labels": t["labels"].to(self.device), "masks": t["masks"].to(self.device)}
                                         for t in targets]
        return moved

    def train_step(self, stage: str, step: int, batch: dict, optimizer: torch.optim.Optimizer,
                   scaler: torch.amp.GradScaler | None) -> dict:
        """One joint IS + VOS iteration; returns the loss terms as floats (plus lr and grad_norm)."""
        torch.manual_seed(step_seed(self.cfg.seed, stage, step, self.dist.rank, stream=0))  # point sampling etc.
        stage_cfg = self.cfg.stage(stage)
        set_learning_rate(optimizer, stage_cfg.lr_factor_at(step))
        inputs = self._to_device(batch)
        autocast = (torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype is not None
                    else contextlib.nullcontext())
        with autocast:
            losses = self.objective(inputs["frames"], inputs["masks"], inputs["labels"], inputs["selector"], step,
                                    inputs["instance_images"], inputs["instance_targets"])
        loss = losses["loss"]
        if self.dist.any_true(not torch.isfinite(loss).item(), self.device):
            terms = ", ".join(f"{k}={float(losses[k].detach()):.4g}" for k in ("loss_vos", "loss_is", "loss_qe_align")
                              if k in losses)
            last = latest_checkpoint_dir(self.out_dir)
            raise TrainingDiverged(f"the loss became NaN/inf at stage {stage!r} step {step} ({terms}); training stopped. "
                                   f"The last good checkpoint is {last if last else 'none (diverged before the first save)'}; "
                                   "lower the learning rate (or disable AMP) and resume with --resume")
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        parameters = [p for p in self.model.parameters() if p.grad is not None]
        grad_norm = torch.nn.utils.clip_grad_norm_(parameters, self.cfg.grad_clip if self.cfg.grad_clip > 0 else math.inf)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        record = {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in losses.items()}
        record["lr"] = optimizer.param_groups[0]["lr"]
        record["grad_norm"] = float(grad_norm)
        if scaler is not None:
            record["loss_scale"] = float(scaler.get_scale())      # fp16 AMP: the dynamic loss scale
        record["max_skip"] = batch["max_skip"]
        return record

    # -- checkpoints and validation -------------------------------------------------------------
    def _save(self, stage: str, step: int, optimizer, scaler) -> None:
        if not self.dist.is_main:
            return
        state = {
            "stage": stage, "step": step, "plan": list(self.plan), "world_size": self.dist.world_size,
            "train_config": self.cfg.to_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else {},
            "rng": capture_rng_state(),
            "curriculum": {"max_skip": self.cfg.stage(stage).max_skip_at(step) if stage != "instance" else 0,
                           "bootstrap_fraction": self.vos_loss.fraction(step)},
        }
        save_training_checkpoint(self.out_dir, self.model, state)

    def _validate(self, stage: str, step: int) -> dict | None:
        """Instance stage: mask AP of the IS branch on held-out instance images (``val_ap``, class-agnostic
        ``val_agnostic_ap``). Static / main: J&F on ``val_videos`` val videos (``val_jf``) and, with query
        enhancement, the EKE's health (``qe_saturated``, ``qe_map_correlation``, ``qe_mask_agreement``)."""
        result = None
        if self.dist.is_main:
            if stage == "instance":
                result = validate_instance_ap(self.model, self.sources, self.cfg.val_instance_images)
            else:
                previews = [] if self.tensorboard is not None else None
                result = validate_jf(self.model, self.sources.root, "val", self.cfg.val_videos,
                                     max_internal_size=self.cfg.val_size or None, previews=previews)
                if previews:
                    self.tensorboard.previews(previews, self.iteration_offset[stage] + step)
                if self.model_cfg.query_enhancement:
                    result.update(validate_qe_health(self.model, self.sources.root, "val", self.cfg.val_videos))
            result.update(stage=stage, step=step, iteration=self.iteration_offset[stage] + step)
            self._publish(result)
        self.dist.barrier()
        self._train_mode()
        return result

    def _publish(self, record: dict) -> None:
        """One record to metrics.jsonl (and to TensorBoard when asked for)."""
        self.log.append(record)
        if self.tensorboard is not None:
            self.tensorboard.log(record)

    def _eta(self, stage: str, done: int, seconds_per_it: float) -> str:
        """Time left for the whole plan (this stage's remaining iterations and every later stage's), at the current
        speed; tqdm's own estimate covers only the current stage."""
        later = self.plan[self.plan.index(stage) + 1:]
        remaining = self.cfg.stage(stage).iterations - done + sum(self.cfg.stage(s).iterations for s in later)
        return tqdm.format_interval(remaining * seconds_per_it)

    def _train_mode(self) -> None:
        self.model.train()
        if self.cfg.freeze_batchnorm:
            freeze_batchnorm(self.model)

    def _export_model(self, stage: str, val: dict | None) -> Path | None:
        if not self.dist.is_main:
            return None
        meta = {"stage": stage, "iterations": self.cfg.stage(stage).iterations, "train_preset": self.cfg.name}
        for key in ("val_jf", "val_ap", "val_agnostic_ap"):
            if val is not None and key in val:
                meta[key] = round(val[key], 2)
        return save_checkpoint(self.model, self.out_dir / "model.safetensors", meta=meta)

    # -- the loop --------------------------------------------------------------------------------
    def _make_scaler(self) -> torch.amp.GradScaler | None:
        """fp16 autocast needs a dynamic loss scale (its state is saved and resumed); bf16 and fp32 do not."""
        return torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None

    def _run_stage(self, stage: str, start_step: int) -> dict | None:
        cfg, stage_cfg = self.cfg, self.cfg.stage(stage)
        # the IS branch trains at full rate while it is what the stage trains, at instance_lr_scale afterwards
        lr_scale = 1.0 if stage == "instance" else cfg.instance_lr_scale
        optimizer = build_optimizer(self.model, stage_cfg.lr, lr_scale, cfg.weight_decay, cfg.instance_lr_modules,
                                    cfg.offset_lr_scale, cfg.decay_all_parameters)
        self.vos_loss.start_step, self.vos_loss.end_step = stage_cfg.bootstrap_start, stage_cfg.bootstrap_end
        scaler = self._make_scaler()
        if self.resume_state is not None and self.resume_state["stage"] == stage:
            optimizer.load_state_dict(self.resume_state["optimizer"])
            if scaler is not None and self.resume_state["scaler"]:
                scaler.load_state_dict(self.resume_state["scaler"])
            restore_rng_state(self.resume_state["rng"])
            self.resume_state = None
        last_val = None
        if start_step >= stage_cfg.iterations:
            return last_val

        clips = build_clip_dataset(self.sources, stage, stage_cfg)
        batches = StepBatches(clips, self._instance_dataset(stage), stage, stage_cfg,
                              self.clips_per_process[stage], self.stage_instances_per_process[stage],
                              cfg.instance_every, cfg.seed, self.dist.rank)
        loader = DataLoader(batches, batch_size=None, sampler=range(start_step, stage_cfg.iterations),
                            num_workers=cfg.num_workers, pin_memory=self.device.type == "cuda",
                            persistent_workers=False)
        self._train_mode()
        bar = tqdm(total=stage_cfg.iterations, initial=start_step, desc=f"train {stage}", unit="it",
                   disable=not self.progress, dynamic_ncols=True)
        window: dict[str, float] = {}
        window_steps, window_seconds = 0, 0.0
        seconds_per_it = None                # smoothed, for the whole-run ETA on the bar
        tick = time.perf_counter()           # seconds per iteration count data loading + the step, not saving
        for step, batch in zip(range(start_step, stage_cfg.iterations), loader):
            record = self.train_step(stage, step, batch, optimizer, scaler)
            window_seconds += time.perf_counter() - tick
            done = step + 1
            for key, value in record.items():
                window[key] = window.get(key, 0.0) + value
            window_steps += 1
            bar.update(1)
            step_seconds = time.perf_counter() - tick
            seconds_per_it = step_seconds if seconds_per_it is None else 0.9 * seconds_per_it + 0.1 * step_seconds
            bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.1e}",
                            eta_all=self._eta(stage, done, seconds_per_it))
            if done % cfg.log_every == 0 or done == stage_cfg.iterations:
                averaged = {k: self.dist.mean(v / window_steps, self.device) for k, v in window.items()}
                if self.dist.is_main:
                    if self.device.type == "cuda":          # peak GPU memory so far (gpu_check.sh reports it)
                        averaged["max_mem_gib"] = torch.cuda.max_memory_allocated(self.device) / 2 ** 30
                    self._publish({"stage": stage, "step": done, "iteration": self.iteration_offset[stage] + done,
                                   **averaged, "sec_per_it": window_seconds / window_steps})
                window, window_steps, window_seconds = {}, 0, 0.0
            if cfg.val_every and (done % cfg.val_every == 0 or done == stage_cfg.iterations):
                last_val = self._validate(stage, done)
                if last_val is not None:
                    tqdm.write(f"[{stage} {done}/{stage_cfg.iterations}] validation {describe_validation(last_val)}",
                               file=sys.stderr)
            if done % cfg.checkpoint_every == 0 or done == stage_cfg.iterations:
                self._save(stage, done, optimizer, scaler)
                if self.dist.is_main:
                    plot_loss_curves(self.log.records(), self.out_dir / "loss_curve.png")
                self.dist.barrier()
            if self.on_step_end is not None:
                self.on_step_end(stage, done, record)
            tick = time.perf_counter()
        bar.close()
        return last_val

    def run(self) -> dict:
        """Train every stage of the plan from where the run stands; returns a short summary."""
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self.log.truncate_after(self.iteration_offset[self.start_stage] + self.start_step)
        started = time.perf_counter()
        summary = {"stages": [], "out_dir": str(self.out_dir)}
        for stage in self.plan[self.plan.index(self.start_stage):]:
            start_step = self.start_step if stage == self.start_stage else 0
            val = self._run_stage(stage, start_step)
            model_path = self._export_model(stage, val)
            entry = {"stage": stage, "iterations": self.cfg.stage(stage).iterations}
            if stage == "instance":
                entry.update(val_ap=val.get("val_ap") if val else None,
                             val_agnostic_ap=val.get("val_agnostic_ap") if val else None)
            else:
                entry["val_jf"] = val.get("val_jf") if val else None
            summary["stages"].append(entry)
            summary["model"] = str(model_path) if model_path else None
        if self.dist.is_main:
            plot_loss_curves(self.log.records(), self.out_dir / "loss_curve.png")
        if self.tensorboard is not None:
            self.tensorboard.close()
        summary["seconds"] = time.perf_counter() - started
        return summary
