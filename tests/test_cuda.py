"""The CUDA / AMP code paths, on a GPU (skipped without one; ``scripts/gpu_check.sh`` runs them on a CUDA machine).

Each check compares the GPU against the CPU where the arithmetic allows it (fp32, TF32 off), and checks that the
mixed-precision paths (bf16 autocast, fp16 with a GradScaler) stay finite."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from isvos_lite.config import get_preset
from isvos_lite.model.deform_attn import ms_deform_attn_core
from isvos_lite.model.isvos import ISVOS

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (scripts/gpu_check.sh)")]


@pytest.fixture(autouse=True)
def exact_fp32():
    """Plain fp32 on the GPU for the comparisons (TF32 would differ from the CPU by ~1e-3)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _clip(seed=0, B=2, T=3, H=64, W=96, O=2):
    g = torch.Generator().manual_seed(seed)
    frames = torch.rand(B, T, 3, H, W, generator=g)
    masks = torch.zeros(B, O, H, W)
    masks[:, 0, 8:30, 10:40] = 1
    masks[:, 1, 35:60, 50:90] = 1
    return frames, masks, torch.ones(B, O)


def test_deformable_attention_core_matches_cpu():
    g = torch.Generator().manual_seed(0)
    shapes = torch.tensor([[6, 10], [3, 5]])
    value = torch.randn(2, 75, 4, 8, generator=g, dtype=torch.float64)
    locations = torch.rand(2, 7, 4, 2, 3, 2, generator=g, dtype=torch.float64)
    weights = torch.rand(2, 7, 4, 2, 3, generator=g, dtype=torch.float64)
    cpu = ms_deform_attn_core(value, shapes, locations, weights)
    gpu = ms_deform_attn_core(value.cuda(), shapes.cuda(), locations.cuda(), weights.cuda())
    torch.testing.assert_close(gpu.cpu(), cpu)


def test_training_forward_and_backward_match_cpu():
    torch.manual_seed(0)
    model = ISVOS(get_preset("tiny")).train()
    gpu_model = ISVOS(get_preset("tiny")).cuda().train()
    gpu_model.load_state_dict(model.state_dict())
    frames, masks, selector = _clip()
    cpu_out = model.forward_clip(frames, masks, selector)
    gpu_out = gpu_model.forward_clip(frames.cuda(), masks.cuda(), selector.cuda())
    torch.testing.assert_close(gpu_out["logits"].cpu(), cpu_out["logits"], rtol=1e-3, atol=1e-3)
    cpu_out["logits"].square().mean().backward()
    gpu_out["logits"].square().mean().backward()
    for (name, p), (_, q) in zip(model.named_parameters(), gpu_model.named_parameters()):
        if p.grad is not None:
            torch.testing.assert_close(q.grad.cpu(), p.grad, rtol=1e-2, atol=1e-4, msg=name)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_forward_is_finite_and_close(dtype):
    torch.manual_seed(1)
    model = ISVOS(get_preset("tiny")).cuda().eval()
    frames, masks, selector = (t.cuda() for t in _clip(1))
    with torch.no_grad():
        full = model.forward_clip(frames, masks, selector)["probs"]
        with torch.autocast("cuda", dtype=dtype):
            mixed = model.forward_clip(frames, masks, selector)["probs"].float()
    assert torch.isfinite(mixed).all()
    assert (mixed - full).abs().mean() < 0.02


@pytest.mark.parametrize("amp", [False, True])
def test_inference_on_cuda_matches_cpu(amp):
    from isvos_lite.inference import VideoSegmenter

    torch.manual_seed(2)
    cpu_model = ISVOS(get_preset("tiny")).eval()
    gpu_model = copy.deepcopy(cpu_model)              # a segmenter moves its model to its device: one model each
    rng = np.random.default_rng(0)
    frames = [(rng.random((70, 101, 3)) * 255).astype(np.uint8) for _ in range(7)]
    mask = np.zeros((70, 101), np.uint8)
    mask[5:30, 5:40], mask[35:65, 50:95] = 3, 7
    gpu = VideoSegmenter(gpu_model, mem_every=2, device="cuda", amp=amp, flip=True)
    cpu = VideoSegmenter(cpu_model, mem_every=2, device="cpu", flip=True)
    for t, f in enumerate(frames):
        gpu_p = gpu.step(f, mask if t == 0 else None)
        cpu_p = cpu.step(f, mask if t == 0 else None)
        assert torch.isfinite(gpu_p).all()
        torch.testing.assert_close(gpu_p.sum(0), torch.ones(70, 101), rtol=0, atol=1e-3)
        tolerance = 0.05 if amp else 1e-3
        assert (gpu_p - cpu_p).abs().max() < tolerance, (t, float((gpu_p - cpu_p).abs().max()))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_trainer_steps_with_amp_on_cuda(tmp_path_factory, dtype):
    from training_helpers import make_tiny_world, tiny_train_config

    from isvos_lite.train.batches import DataSources
    from isvos_lite.train.trainer import Trainer

    world = make_tiny_world(tmp_path_factory.mktemp("world") / "toy")
    records = []
    trainer = Trainer(tiny_train_config(iterations=4, amp=True), get_preset("tiny"), DataSources.discover(world),
                      tmp_path_factory.mktemp("run"), plan=("main",), device="cuda", progress=False,
                      on_step_end=lambda stage, step, record: records.append(record))
    trainer.amp_dtype = dtype                     # the trainer picks bf16 where supported; check fp16 + scaler too
    trainer.run()
    assert len(records) == 4 and all(np.isfinite(r["loss"]) for r in records)
    assert ("loss_scale" in records[0]) == (dtype == torch.float16)
    logged = [r for r in trainer.log.records() if "loss" in r]
    assert logged and all(r["max_mem_gib"] > 0 for r in logged)
