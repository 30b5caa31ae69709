"""How much memory a training run will need at its peak, known before the first step (and what would fit).

A training step holds, at its peak (the start of the backward pass):

* the **weights**, their **gradients** and AdamW's **two moments**: 4 x 4 bytes per parameter (fp32 master weights,
  also under AMP);
* the **activations** autograd keeps for the backward pass. They are *counted*, not guessed: one forward pass of
  one clip (``batch_size`` 1, the stage's clip length and objects) and one of one instance image runs through the
  real objective (model + losses) with ``torch.autograd.graph.saved_tensors_hooks`` summing the bytes of every
  distinct tensor storage saved that is not a parameter. A probe at the full crop would itself need as much memory
  as a one-clip step (13 GB for ``paper``'s 8-frame, 3-object clips at 384²), so crops above
  :data:`PROBE_CROPS`' largest are probed at both of its sizes and extrapolated as ``k0 + k1 * pixels`` (per-query
  and per-point terms do not grow with the image; the memory read's affinity, quadratic in pixels, is ~1 % of a
  clip). Clips and images of a batch are independent, so the step keeps ``batch_size`` x one clip's bytes +
  ``instance_batch_size`` x one image's bytes (over the processes of a distributed run, each keeps its share);
* the **runtime**: on a CPU, the resident memory of this process before the probe model is built, once the
  training stack (trainer, plotting) is imported (Python, PyTorch, the data index); on CUDA, the CUDA context
  (about 0.5 GiB);
* the **checkpoint copy**: writing a checkpoint serialises the weights in memory (:data:`CHECKPOINT_COPIES`
  weight-sized buffers, safetensors' Python bytes and file buffer) while the memory of the step is still held by
  the allocator;
* a **backward margin**: while the backward pass runs, the gradients of the activations exist next to the saved
  tensors that are not yet freed; :data:`BACKWARD_MARGIN` of the activations covers it
  (``scripts/memory_estimate_check.py`` compares the estimate with a run's measured peak; docs/TRAINING.md has
  the numbers).

The probes run on the training device with the trainer's autocast, so an fp16 / bf16 CUDA run is estimated at its
own precision. :func:`fitting_settings` proposes the largest settings that fit a memory limit.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import sys
from dataclasses import dataclass, field

import torch

from isvos_lite.config import ModelConfig
from isvos_lite.train.config import TrainConfig

__all__ = ["MemoryEstimate", "estimate_training_memory", "available_memory", "fitting_settings", "GIB",
           "BACKWARD_MARGIN", "current_rss", "peak_rss"]

GIB = 2 ** 30
PROBE_CROPS = (64, 96)        # crops probed when the run's crop is larger (multiples of the backbone's stride, 32)
BACKWARD_MARGIN = 0.5         # activation gradients alive during backward, as a fraction of the saved activations
CHECKPOINT_COPIES = 2         # weight-sized buffers while a checkpoint is written (Python bytes + the file buffer)
CUDA_CONTEXT = int(0.5 * GIB)


@dataclass
class MemoryEstimate:
    """The estimated peak of a run (its largest stage) and what it is made of, in bytes."""

    peak_bytes: int
    stage: str
    parts: dict[str, int]
    per_clip: dict[str, int] = field(default_factory=dict)        # stage -> saved bytes of one clip
    per_image: dict[str, int] = field(default_factory=dict)       # stage -> saved bytes of one instance image
    # stage -> (k0, k1): one clip's / image's bytes at crop c are k0 + k1 * c² (for settings at other crops)
    clip_model: dict[str, tuple[float, float]] = field(default_factory=dict)
    image_model: dict[str, tuple[float, float]] = field(default_factory=dict)
    static_bytes: int = 0                                         # weights + gradients + AdamW moments
    runtime_bytes: int = 0

    def describe(self) -> str:
        parts = ", ".join(f"{name} {value / GIB:.2f}" for name, value in self.parts.items())
        return f"{self.peak_bytes / GIB:.2f} GiB at the {self.stage} stage ({parts} GiB)"


def current_rss() -> int:
    """Resident memory of this process now, in bytes (Linux /proc; elsewhere the peak so far)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return peak_rss()


def peak_rss() -> int:
    """The largest resident memory this process has had, in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def available_memory(device: str | torch.device) -> int:
    """Bytes a run may use: the GPU's free memory on CUDA; on a CPU the available memory (MemAvailable) plus what
    this process already holds (it is counted in the estimate's runtime)."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f if ":" in line}
        return info["MemAvailable"] + current_rss()
    except (OSError, KeyError, ValueError):
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


# ---------------------------------------------------------------------------------------------- probes
class _SavedBytes:
    """Sums the bytes of distinct non-parameter storages autograd saves inside the block."""

    def __init__(self, parameters):
        self.skip = {p.untyped_storage().data_ptr() for p in parameters}
        self.seen: set[int] = set()
        self.bytes = 0

    def pack(self, tensor):
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key not in self.skip and key not in self.seen and storage.nbytes() > 0:
            self.seen.add(key)
            self.bytes += storage.nbytes()
        return tensor

    @staticmethod
    def unpack(tensor):
        return tensor


def _autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def _probe_objective(model_cfg: ModelConfig, cfg: TrainConfig, device: torch.device):
    from isvos_lite.model.isvos import ISVOS
    from isvos_lite.train.criterion import SetCriterion
    from isvos_lite.train.losses import VOSLoss
    from isvos_lite.train.trainer import JointObjective

    model = ISVOS(model_cfg).to(device).train()
    criterion = SetCriterion(model_cfg.num_classes, num_points=cfg.num_points)
    return JointObjective(model, VOSLoss(), criterion, cfg.instance_weight, cfg.qe_align_weight).to(device)


def _clip_bytes(objective, frames: int, crop: int, objects: int, device, amp: bool) -> int:
    gen = torch.Generator().manual_seed(0)
    video = torch.rand(1, frames, 3, crop, crop, generator=gen)
    labels = torch.zeros(1, frames, crop, crop, dtype=torch.long)
    for k in range(objects):                                    # one square per object, in every frame
        lo = crop * k // (objects + 1)
        labels[:, :, lo: lo + crop // (objects + 2), lo: lo + crop // (objects + 2)] = k + 1
    masks = torch.stack([(labels == k + 1).float() for k in range(objects)], dim=2)
    selector = torch.ones(1, objects)
    counter = _SavedBytes(objective.parameters())
    with torch.autograd.graph.saved_tensors_hooks(counter.pack, counter.unpack), _autocast(device, amp):
        losses = objective(video.to(device), masks.to(device), labels.to(device), selector.to(device), 0)
    del losses
    return counter.bytes


def _image_bytes(objective, crop: int, device, amp: bool) -> int:
    gen = torch.Generator().manual_seed(1)
    image = torch.rand(1, 3, crop, crop, generator=gen)
    target_masks = torch.zeros(2, crop, crop)
    target_masks[0, : crop // 2, : crop // 2] = 1
    target_masks[1, crop // 2:, crop // 2:] = 1
    targets = [{"labels": torch.tensor([0, 1], device=device), "masks": target_masks.to(device)}]
    counter = _SavedBytes(objective.parameters())
    with torch.autograd.graph.saved_tensors_hooks(counter.pack, counter.unpack), _autocast(device, amp):
        losses = objective(None, None, None, None, 0, image.to(device), targets)
    del losses
    return counter.bytes


# ---------------------------------------------------------------------------------------------- the estimate
_RUNTIME: list[int] = []


def _runtime_rss() -> int:
    """This process's resident memory before its first probe, with the training stack imported."""
    if not _RUNTIME:
        import isvos_lite.train.trainer  # noqa: F401  (what the run imports anyway)
        import matplotlib
        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot  # noqa: F401  (the loss curve)
        _RUNTIME.append(current_rss())
    return _RUNTIME[0]


def _return_freed_memory() -> None:
    """Hand the probes' freed memory back to the system (glibc keeps freed heap pages otherwise), so that the run
    after the estimate does not start with the probes' leftovers."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass


def estimate_training_memory(cfg: TrainConfig, model_cfg: ModelConfig, stages, device: str | torch.device = "cpu",
                             world_size: int | None = None) -> MemoryEstimate:
    """The peak memory of training ``stages`` of ``cfg`` on ``device`` (one process's share), with its parts."""
    device = torch.device(device)
    world = world_size or int(os.environ.get("WORLD_SIZE", "1"))
    runtime = CUDA_CONTEXT if device.type == "cuda" else _runtime_rss()
    objective = _probe_objective(model_cfg, cfg, device)
    params = sum(p.numel() for p in objective.parameters())
    static = params * 4 * 4                         # weights, gradients, AdamW exp_avg and exp_avg_sq (fp32)
    cache: dict[tuple, tuple[float, float]] = {}
    per_clip, per_image, clip_model, image_model = {}, {}, {}, {}
    best = None
    for stage in stages:
        stage_cfg = cfg.stage(stage)
        if stage == "instance":
            images, clips = math.ceil(stage_cfg.batch_size / world), 0
        else:
            clips = math.ceil(stage_cfg.batch_size / world)
            images = math.ceil(cfg.instance_batch_size / world) if cfg.instance_every else 0
        crop = stage_cfg.crop_size
        image_key = ("image", crop)
        if images and image_key not in cache:
            cache[image_key] = _pixel_model(lambda c: _image_bytes(objective, c, device, cfg.amp), crop)
        clip_key = ("clip", stage_cfg.clip_frames, crop, stage_cfg.max_objects)
        if clips and clip_key not in cache:
            cache[clip_key] = _pixel_model(lambda c: _clip_bytes(objective, stage_cfg.clip_frames, c,
                                                                 stage_cfg.max_objects, device, cfg.amp), crop)
        image_model[stage] = cache.get(image_key, (0.0, 0.0))
        clip_model[stage] = cache.get(clip_key, (0.0, 0.0))
        per_image[stage] = int(image_model[stage][0] + image_model[stage][1] * crop ** 2)
        per_clip[stage] = int(clip_model[stage][0] + clip_model[stage][1] * crop ** 2)
        activations = clips * per_clip[stage] + images * per_image[stage]
        parts = {"weights+grads+AdamW": static, "activations": activations,
                 "backward margin": int(BACKWARD_MARGIN * activations), "checkpoint copy": CHECKPOINT_COPIES * static // 4,
                 "runtime": runtime}
        peak = sum(parts.values())
        if best is None or peak > best.peak_bytes:
            best = MemoryEstimate(peak, stage, parts, static_bytes=static, runtime_bytes=runtime)
    del objective
    _return_freed_memory()
    best.per_clip, best.per_image, best.clip_model, best.image_model = per_clip, per_image, clip_model, image_model
    return best


def _pixel_model(measure, crop: int) -> tuple[float, float]:
    """(k0, k1) with bytes(c) = k0 + k1 * c²: measured at ``crop`` itself when it is small, else fitted to the
    two :data:`PROBE_CROPS` (a larger probe would need the memory the estimate is there to check)."""
    if crop <= PROBE_CROPS[-1]:
        return 0.0, measure(crop) / crop ** 2
    small, large = PROBE_CROPS[0], PROBE_CROPS[-1]
    a, b = measure(small), measure(large)
    k1 = (b - a) / (large ** 2 - small ** 2)
    k0 = max(0.0, a - k1 * small ** 2)
    return k0, k1


def fitting_settings(estimate: MemoryEstimate, cfg: TrainConfig, stages, limit: int) -> tuple[dict, int] | None:
    """The largest settings whose estimate fits ``limit`` bytes, as {option: value} with their estimate, or None.

    Tried in order: fewer clips and instance images per step at the same crop and clip length; then smaller crops
    (activations follow ``k0 + k1 * pixels``), then shorter clips (taken as proportional to the frames); the joint
    instance step is dropped (``--instance-every 0``) only when one image does not fit beside one clip.
    """
    fixed = estimate.static_bytes + CHECKPOINT_COPIES * estimate.static_bytes // 4 + estimate.runtime_bytes
    room = limit - fixed
    if room <= 0:
        return None
    factor = 1 + BACKWARD_MARGIN
    stage = max(stages, key=lambda s: estimate.per_clip.get(s, 0) + estimate.per_image.get(s, 0))
    stage_cfg = cfg.stage(stage)
    want_clips = stage_cfg.batch_size
    want_images = cfg.instance_batch_size if cfg.instance_every else 0
    clip_k0, clip_k1 = estimate.clip_model.get(stage, (0.0, 0.0))
    image_k0, image_k1 = estimate.image_model.get(stage, (0.0, 0.0))
    frames_options = sorted({stage_cfg.clip_frames, *[t for t in (8, 5, 4, 3) if t < stage_cfg.clip_frames]},
                            reverse=True)
    crops = [c for c in range(stage_cfg.crop_size, 63, -32)]
    for frames in frames_options:
        for crop in crops:
            clip = (clip_k0 + clip_k1 * crop ** 2) * frames / stage_cfg.clip_frames
            image = image_k0 + image_k1 * crop ** 2
            for images_allowed in ((True, False) if want_images else (False,)):
                for clips in range(max(want_clips, 1), 0, -1):
                    left = room - factor * clips * clip
                    if left < 0:
                        continue
                    images = min(want_images, int(left // (factor * image))) if images_allowed and image else 0
                    if images_allowed and want_images and images < 1:
                        continue
                    settings = {"--batch-size": clips, "--instance-batch-size": max(images, 1),
                                "--crop-size": crop, "--clip-frames": frames}
                    if want_images and not images_allowed:
                        settings["--instance-every"] = 0
                    peak = int(fixed + factor * (clips * clip + images * image))
                    return settings, peak
    return None
