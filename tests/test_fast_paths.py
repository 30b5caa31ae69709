"""The inference fast paths against their readable references (same numbers, float tolerance).

* deformable attention: ``ms_deform_attn_gather`` (one embedding_bag) = ``ms_deform_attn_core`` (grid_sample);
* the MPF decoder: the object-shared half of each fusion block computed once per frame = the concatenation of Eq. (4);
* the whole model: a step of the shipped checkpoint with the fast paths = the same step with the references.
"""

import pytest
import torch

from isvos_lite.model.deform_attn import MSDeformAttn, ms_deform_attn_core, ms_deform_attn_gather


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_deform_attn_gather_equals_grid_sample(dtype):
    torch.manual_seed(0)
    shapes = [(3, 5), (6, 10), (1, 1), (12, 20)]
    B, Lq, M, D, L, P = 2, 37, 3, 4, len(shapes), 3
    value = torch.randn(B, sum(h * w for h, w in shapes), M, D, dtype=dtype)
    locations = torch.rand(B, Lq, M, L, P, 2, dtype=dtype) * 1.6 - 0.3          # many fall outside the maps
    locations[0, 0] = torch.tensor([-5.0, 9.0], dtype=dtype)                    # far outside
    locations[0, 1] = 0.0                                                       # exact corners and edges
    locations[0, 2] = 1.0
    locations[1, 3, :, :, :, 0] = 0.5
    weights = torch.rand(B, Lq, M, L, P, dtype=dtype).softmax(-1)
    spatial_shapes = torch.tensor(shapes)
    expected = ms_deform_attn_core(value, spatial_shapes, locations, weights)
    got = ms_deform_attn_gather(value, spatial_shapes, locations, weights)
    assert got.shape == expected.shape == (B, Lq, M * D)
    torch.testing.assert_close(got, expected)


def test_deform_attn_module_uses_the_reference_when_training_and_gives_the_same_output():
    torch.manual_seed(1)
    attn = MSDeformAttn(d_model=16, n_levels=2, n_heads=4, n_points=2)
    torch.nn.init.normal_(attn.sampling_offsets.weight, std=0.5)                # offsets that vary per query
    torch.nn.init.normal_(attn.attention_weights.weight)
    shapes = torch.tensor([(4, 6), (8, 12)])
    S = int((shapes[:, 0] * shapes[:, 1]).sum())
    query = torch.randn(2, 10, 16, requires_grad=True)
    value = torch.randn(2, S, 16)
    ref = torch.rand(2, 10, 2, 2)
    start = torch.tensor([0, 24])
    trained = attn(query, ref, value, shapes, start)                            # grid_sample path, with gradients
    trained.sum().backward()
    assert query.grad is not None and query.grad.abs().sum() > 0
    with torch.no_grad():
        fast = attn(query, ref, value, shapes, start)                           # embedding_bag path
    torch.testing.assert_close(fast, trained.detach())


def test_fast_inference_records_the_same_sampling_and_softmax():
    from isvos_lite.model.deform_attn import softmax_short_last_axis

    logits = torch.randn(3, 7, 4, 12) * 5
    torch.testing.assert_close(softmax_short_last_axis(logits), logits.softmax(-1))
    torch.manual_seed(1)
    attn = MSDeformAttn(d_model=16, n_levels=2, n_heads=4, n_points=3)
    attn.record = True
    shapes = torch.tensor([[4, 6], [2, 3]])
    query, value, ref = torch.randn(2, 9, 16), torch.randn(2, 30, 16), torch.rand(2, 9, 2, 2)
    start = torch.tensor([0, 24])
    with torch.no_grad():
        fast = attn(query, ref, value, shapes, start)
        fast_sampling = attn.last_sampling
        MSDeformAttn.fast_inference = False
        try:
            reference = attn(query, ref, value, shapes, start)
        finally:
            MSDeformAttn.fast_inference = True
    torch.testing.assert_close(fast, reference)
    for got, want in zip(fast_sampling, attn.last_sampling):
        assert got.shape == want.shape == (2, 9, 4, 2, 3, 2)[: want.dim()]
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("dims, objects", [((16, 8, 8), 3), ((8, 8, 16), 2), ((16, 8, 8), 1)])
def test_mpf_shared_pixel_half_equals_the_concatenation(dims, objects, monkeypatch):
    from isvos_lite.model.mpf_decoder import MPFBlock, MPFDecoder

    torch.manual_seed(2)
    decoder = MPFDecoder(value_dim=16, skip_channels=(12, 10, 6), pixel_dim=8, dims=dims).double()
    B, h, w = 2, 3, 5
    readout = torch.randn(B, objects, 16, h, w, dtype=torch.float64)
    skips = (torch.randn(B, 12, h, w, dtype=torch.float64), torch.randn(B, 10, 2 * h, 2 * w, dtype=torch.float64),
             torch.randn(B, 6, 4 * h, 4 * w, dtype=torch.float64))
    pixel = [torch.randn(B, 8, h // 2 + 1, w // 2 + 1, dtype=torch.float64),
             torch.randn(B, 8, h, w, dtype=torch.float64), torch.randn(B, 8, 2 * h, 2 * w, dtype=torch.float64)]
    fast, fast_stages = decoder(readout, skips, pixel, return_features=True)
    monkeypatch.setattr(MPFBlock, "share_pixel_path", False)
    reference, ref_stages = decoder(readout, skips, pixel, return_features=True)
    torch.testing.assert_close(fast, reference)
    for a, b in zip(fast_stages, ref_stages):
        torch.testing.assert_close(a, b)


def test_shipped_checkpoint_predicts_the_same_with_the_reference_paths(monkeypatch):
    """Ten frames of a 3-object video through the shipped lite model: fast paths = readable references."""
    from pathlib import Path

    import isvos_lite.inference.segmenter as segmenter
    from isvos_lite.checkpoint import load_checkpoint
    from isvos_lite.model.memory import query_major_similarity, topk_readout
    from isvos_lite.commands.benchmark import synthetic_video
    from isvos_lite.inference import VideoSegmenter
    from isvos_lite.model.mpf_decoder import MPFBlock

    checkpoint = Path(__file__).resolve().parents[1] / "checkpoints" / "lite.safetensors"
    model = load_checkpoint(checkpoint)
    frames = [f for f, _ in zip(synthetic_video(96, 160, 3, seed=3), range(10))]

    def run():
        seg = VideoSegmenter(model, mem_every=2, amp=False)                    # the fast paths are exact in fp32
        return torch.stack([seg.step(frame, mask if t == 0 else None) for t, (frame, mask) in enumerate(frames)])

    fast = run()
    monkeypatch.setattr(MSDeformAttn, "fast_inference", False)
    monkeypatch.setattr(MPFBlock, "share_pixel_path", False)
    monkeypatch.setattr(segmenter, "blockwise_topk_read",
                        lambda mem_key, query_key, values, k: topk_readout(query_major_similarity(mem_key, query_key),
                                                                           values, k)[0])
    reference = run()
    torch.testing.assert_close(fast, reference, atol=1e-4, rtol=0)
    assert torch.equal(fast.argmax(1), reference.argmax(1))


@pytest.mark.slow
def test_a_dataloader_worker_gives_the_same_training_run(tmp_path):
    """The lite recipe makes its batches in one DataLoader worker: the losses are those of num_workers=0."""
    import json

    from training_helpers import make_tiny_world, tiny_train_config

    from isvos_lite.config import get_preset
    from isvos_lite.train.batches import DataSources
    from isvos_lite.train.config import get_train_preset
    from isvos_lite.train.trainer import Trainer

    assert get_train_preset("lite").num_workers == 1
    world = make_tiny_world(tmp_path / "world")
    losses = []
    for workers in (0, 1):
        out = tmp_path / f"run-{workers}"
        Trainer(tiny_train_config(iterations=3, num_workers=workers), get_preset("tiny"), DataSources.discover(world),
                out, plan=("main",), progress=False).run()
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        losses.append([r["loss"] for r in records if "loss" in r])
    assert len(losses[0]) == 3 and losses[0] == losses[1]
