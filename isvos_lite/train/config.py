"""Training configuration: one dataclass per stage, one for the whole recipe, and named presets.

The paper starts from a COCO-trained Mask2Former and then trains in two stages (§4.1 "Training"), jointly with
the instance-segmentation task throughout:

``instance``  instance-segmentation pretraining of backbone + pixel decoder + transformer decoder alone (the
              analogue of the paper's COCO-pretrained Mask2Former, Table 4). On real data you would rather
              import Mask2Former weights (``isvos_lite.weights``); on the teaching world, where no such weights
              exist, this stage makes them: an unlimited stream of procedural instance images
              (``isvos_lite.data.instance_stream``);
``static``  pretraining on pseudo-clips made from still images (deformed copies of one image),
            150K iterations, batch 56, learning rate 4e-5;
``main``    training on real video clips (DAVIS + YouTube-VOS), 110K iterations, batch 16, learning rate 2e-5,
            decayed ×0.1 after 80K iterations.

Both use AdamW with weight decay 0.05; the parameters the paper initialises from COCO Mask2Former train at 0.1× the
learning rate (``paper``: backbone, pixel decoder and transformer decoder, with no weight decay on norms, embeddings
and biases and the deformable sampling offsets at 0.1×, as Mask2Former / Deformable DETR; ``lite``: pixel and
transformer decoder only, weight decay everywhere; ``isvos_lite/train/optimizer.py`` says why). What the paper leaves open is taken
from the references it follows (STCN [15], XMem [13]; see ``reference/peers.md`` §2): 384² crops, 3-frame
static clips with one object, 8-frame video clips with up to 3 objects, the max-skip curriculum, the
bootstrapped-CE schedule (20K → 70K iterations), and Cutie's gradient clipping at 3.0.

Presets
-------
``paper``  the schedule above, for GPUs and the real datasets (mixed precision on CUDA).
``lite``   the same recipe shrunk to learn the teaching world on a 2-core CPU: an instance stage on the
           procedural instance stream, then static and main at **one scale**: every crop (instance images,
           pseudo-clips, video clips) is 160x160 pixels cut from 160x288 frames at zoom 0.8-1.25, the size at
           which inference sees the frames, so objects have the same size in pixels in training and testing.
           A higher learning rate than the paper's (small model, no ImageNet weights), the IS branch at 0.1x
           after the instance stage (as the paper protects its COCO weights).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = ["StageConfig", "TrainConfig", "TRAIN_PRESETS", "STAGES", "get_train_preset", "train_config_from_dict"]

STAGES = ("instance", "static", "main")
# the top-level modules of isvos_lite.model.isvos.ISVOS
MODEL_MODULES = ("backbone", "pixel_decoder", "transformer_decoder", "key_encoder", "value_encoder", "decoder")


@dataclass
class StageConfig:
    """The schedule and data of one training stage."""

    iterations: int
    batch_size: int                       # VOS clips per iteration, over all processes (as XMem counts it)
    lr: float
    lr_decay_steps: tuple[int, ...] = ()  # the learning rate is multiplied by 0.1 at each of these steps
    clip_frames: int = 3                  # frames per training clip (frame 0 is given, the rest predicted)
    max_objects: int = 1                  # objects per clip (padded with selector 0 when a clip has fewer)
    crop_size: int = 384                  # square crop of the VOS and IS images
    # max-skip curriculum (XMem): (fraction of the stage's iterations, largest frame gap from then on)
    max_skip: tuple[tuple[float, int], ...] = ((0.0, 5), (0.1, 10), (0.3, 15), (0.9, 5))
    bootstrap_start: int = 20_000         # bootstrapped CE: all pixels before this step ...
    bootstrap_end: int = 70_000           # ... the hardest 15 % after this step (linear in between)
    # None: the references' scale augmentation (video: RandomResizedCrop of 36-100 % of the frame; static: affine
    # 0.8-1.5x); (lo, hi): ONE scale, a crop_size crop of the frame at its own resolution, zoomed by lo..hi
    scale_jitter: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        self.lr_decay_steps = tuple(int(s) for s in self.lr_decay_steps)
        self.max_skip = tuple((float(f), int(s)) for f, s in self.max_skip)
        for name in ("iterations", "batch_size", "crop_size", "max_objects"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.clip_frames < 2:
            raise ValueError(f"clip_frames must be >= 2 (one given frame + at least one predicted), got {self.clip_frames}")
        if self.crop_size % 32:
            raise ValueError(f"crop_size must be a multiple of 32 (the backbone's stride), got {self.crop_size}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not self.max_skip or self.max_skip[0][0] != 0.0 or any(s < 1 for _, s in self.max_skip):
            raise ValueError(f"max_skip must start at fraction 0.0 with skips >= 1, got {self.max_skip}")
        if self.scale_jitter is not None:
            self.scale_jitter = (float(self.scale_jitter[0]), float(self.scale_jitter[1]))
            if not 0 < self.scale_jitter[0] <= self.scale_jitter[1]:
                raise ValueError(f"scale_jitter must be (lo, hi) with 0 < lo <= hi, got {self.scale_jitter}")
        if not 0 <= self.bootstrap_start <= self.bootstrap_end:
            raise ValueError(f"need 0 <= bootstrap_start <= bootstrap_end, got {self.bootstrap_start}, {self.bootstrap_end}")

    def max_skip_at(self, step: int) -> int:
        """The curriculum's largest frame gap at ``step`` of this stage."""
        skip = self.max_skip[0][1]
        for fraction, value in self.max_skip:
            if step >= fraction * self.iterations:
                skip = value
        return skip

    def with_iterations(self, iterations: int) -> "StageConfig":
        """The same schedule stretched to ``iterations``: decay and bootstrap steps scale proportionally."""
        if iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {iterations}")
        ratio = iterations / self.iterations
        return dataclasses.replace(
            self, iterations=iterations,
            lr_decay_steps=tuple(max(1, round(s * ratio)) for s in self.lr_decay_steps),
            bootstrap_start=round(self.bootstrap_start * ratio), bootstrap_end=round(self.bootstrap_end * ratio))

    def lr_factor_at(self, step: int) -> float:
        """Step decay: 0.1 to the power of the number of decay steps already passed."""
        return 0.1 ** sum(step >= s for s in self.lr_decay_steps)


@dataclass
class TrainConfig:
    """The whole recipe: model preset, the three stages, optimiser, joint IS task, feedback and checkpoints.

    The ``instance`` stage's ``batch_size`` counts images and its clip fields are unused.
    """

    name: str
    model_preset: str                     # a ModelConfig preset (isvos_lite.config)
    instance: StageConfig
    static: StageConfig
    main: StageConfig

    # optimiser (§4.1)
    weight_decay: float = 0.05
    instance_lr_scale: float = 0.1        # learning-rate factor of the Mask2Former parameters (instance_lr_modules)
    # the top-level modules trained at instance_lr_scale after the instance stage: what came from Mask2Former
    instance_lr_modules: tuple[str, ...] = ("pixel_decoder", "transformer_decoder")
    offset_lr_scale: float = 1.0          # factor of the deformable attention's sampling_offsets (Deformable DETR: 0.1)
    decay_all_parameters: bool = True     # False: no weight decay on norms, embeddings, biases (Mask2Former)
    grad_clip: float = 3.0                # max L2 norm of all gradients together (0 disables)
    freeze_batchnorm: bool = True         # BatchNorm layers keep their statistics (eval mode) while training

    # the joint instance-segmentation task (§4.1: the IS branch is trained on COCO at 384)
    instance_batch_size: int = 16         # images per IS step, over all processes
    instance_every: int = 1               # an IS step every this many iterations (0: no joint IS training)
    instance_weight: float = 1.0          # weight of the IS loss in the joint objective
    num_points: int = 12544               # points per mask for the IS mask losses (Mask2Former: 112²)
    # where IS images come from: "coco" (an instances JSON, e.g. COCO 2017) | "stream" (procedural, unlimited)
    instance_data: str = "coco"
    # "stream" only: probability that a stream image's instance texture, and its background, is a window of a real
    # training photograph (isvos_lite.data.photos; 0: procedural looks only)
    instance_photos: float = 0.0
    # weight of the EKE's map-to-mask alignment term (ours, isvos_lite/model/key_encoder.py; 0 disables)
    qe_align_weight: float = 0.5

    # machinery
    amp: bool = True                      # bfloat16/float16 autocast when training on CUDA
    seed: int = 0
    num_workers: int = 4                  # DataLoader worker processes per training process
    log_every: int = 50                   # metrics log line every this many iterations
    checkpoint_every: int = 5000          # training state every this many iterations (and at the end)
    val_every: int = 10_000               # validation J&F every this many iterations (0 disables)
    val_videos: int = 8                   # number of validation videos scored each time
    val_size: int = 480                   # short side of the validation frames (0: as they are)
    val_instance_images: int = 100        # held-out IS images scored (mask AP) when validating the instance stage

    def __post_init__(self) -> None:
        if isinstance(self.instance, dict):
            self.instance = StageConfig(**self.instance)
        if isinstance(self.static, dict):
            self.static = StageConfig(**self.static)
        if isinstance(self.main, dict):
            self.main = StageConfig(**self.main)
        for name in ("instance_batch_size", "num_points", "log_every", "checkpoint_every", "val_videos",
                     "val_instance_images"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("instance_every", "val_every", "num_workers", "grad_clip", "weight_decay", "instance_weight",
                     "val_size"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.instance_photos <= 1:
            raise ValueError(f"instance_photos must be a probability in [0, 1], got {self.instance_photos}")
        if self.instance_data not in ("coco", "stream"):
            raise ValueError(f"instance_data must be 'coco' or 'stream', got {self.instance_data!r}")
        if self.qe_align_weight < 0:
            raise ValueError(f"qe_align_weight must be >= 0, got {self.qe_align_weight}")
        if not 0 < self.instance_lr_scale <= 1:
            raise ValueError(f"instance_lr_scale must be in (0, 1], got {self.instance_lr_scale}")
        if not 0 < self.offset_lr_scale <= 1:
            raise ValueError(f"offset_lr_scale must be in (0, 1], got {self.offset_lr_scale}")
        self.instance_lr_modules = tuple(self.instance_lr_modules)
        unknown = [m for m in self.instance_lr_modules if m not in MODEL_MODULES]
        if unknown:
            raise ValueError(f"instance_lr_modules {unknown} are not modules of the model; choose among {MODEL_MODULES}")

    def stage(self, name: str) -> StageConfig:
        if name not in STAGES:
            raise ValueError(f"unknown stage {name!r}; choose one of {', '.join(STAGES)}")
        return getattr(self, name)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["instance_lr_modules"] = list(d["instance_lr_modules"])
        for stage in STAGES:
            d[stage]["lr_decay_steps"] = list(d[stage]["lr_decay_steps"])
            d[stage]["max_skip"] = [list(pair) for pair in d[stage]["max_skip"]]
            if d[stage]["scale_jitter"] is not None:
                d[stage]["scale_jitter"] = list(d[stage]["scale_jitter"])
        return d

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


TRAIN_PRESETS: dict[str, TrainConfig] = {
    "paper": TrainConfig(
        name="paper", model_preset="paper",
        # Mask2Former R50 COCO instance schedule (50 epochs at batch 16, lr 1e-4, decay x0.1 at 89 % and 96 %);
        # with imported Mask2Former weights, skip it: --stage static / main with --init
        instance=StageConfig(iterations=368_750, batch_size=16, lr=1e-4, lr_decay_steps=(327_778, 355_092),
                             crop_size=384),
        static=StageConfig(iterations=150_000, batch_size=56, lr=4e-5, lr_decay_steps=(),
                           clip_frames=3, max_objects=1, crop_size=384),
        main=StageConfig(iterations=110_000, batch_size=16, lr=2e-5, lr_decay_steps=(80_000,),
                         clip_frames=8, max_objects=3, crop_size=384),
        # 0.1x for everything loaded from Mask2Former; its and Deformable DETR's conventions (train/optimizer.py)
        instance_lr_modules=("backbone", "pixel_decoder", "transformer_decoder"), offset_lr_scale=0.1,
        decay_all_parameters=False,
    ),
    "lite": TrainConfig(
        name="lite", model_preset="lite",
        instance=StageConfig(iterations=2500, batch_size=8, lr=1e-3, lr_decay_steps=(2100,), crop_size=160,
                             scale_jitter=(0.8, 1.25)),
        static=StageConfig(iterations=300, batch_size=4, lr=1e-3, lr_decay_steps=(),
                           clip_frames=3, max_objects=1, crop_size=160, scale_jitter=(0.8, 1.25),
                           bootstrap_start=75, bootstrap_end=225),
        main=StageConfig(iterations=1200, batch_size=4, lr=5e-4, lr_decay_steps=(1000,),
                         clip_frames=3, max_objects=2, crop_size=160, scale_jitter=(0.8, 1.25),
                         max_skip=((0.0, 3), (0.1, 5), (0.3, 8), (0.9, 3)),
                         bootstrap_start=240, bootstrap_end=800),
        instance_lr_scale=0.1, grad_clip=3.0, freeze_batchnorm=False, instance_weight=0.25,
        instance_batch_size=4, instance_every=1, num_points=1024, instance_data="stream", qe_align_weight=0.5,
        instance_photos=0.4,
        # one DataLoader worker: the next step's procedural images and clips are made on the second core while
        # this step trains (batches are a pure function of the step, so the results do not change)
        amp=False, num_workers=1, log_every=10, checkpoint_every=100, val_every=300, val_videos=6, val_size=0,
    ),
}


def get_train_preset(name: str, **overrides) -> TrainConfig:
    """A fresh copy of a named training preset, optionally with some top-level fields changed."""
    if name not in TRAIN_PRESETS:
        raise ValueError(f"unknown training preset {name!r}; choose one of {', '.join(TRAIN_PRESETS)}")
    base = TRAIN_PRESETS[name]
    copy = dataclasses.replace(base, instance=dataclasses.replace(base.instance),
                               static=dataclasses.replace(base.static), main=dataclasses.replace(base.main))
    return dataclasses.replace(copy, **overrides)


def train_config_from_dict(d: dict) -> TrainConfig:
    """Rebuild a TrainConfig from ``to_dict()`` output (e.g. a training-state file), rejecting unknown fields."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"training config has unknown fields {unknown}; was it written by a newer isvos-lite?")
    d = dict(d)
    stage_fields = {f.name for f in dataclasses.fields(StageConfig)}
    for stage in STAGES:
        if stage in d:
            bad = sorted(set(d[stage]) - stage_fields)
            if bad:
                raise ValueError(f"training config stage {stage!r} has unknown fields {bad}")
            d[stage] = StageConfig(**d[stage])
    missing = [s for s in STAGES if s not in d]
    if missing:
        raise ValueError(f"training config has no {', '.join(missing)} stage: it was written by an older isvos-lite "
                         "(before the instance stage); start a new run instead of resuming it")
    return TrainConfig(**d)
