"""VideoSegmenter: the paper's inference protocol and the bad-input contract."""

import numpy as np
import pytest
import torch

from isvos_lite.inference import VideoSegmenter, frame_to_tensor, segment_video


def _video(T=8, H=70, W=101, ids=(3, 7), seed=0):
    rng = np.random.default_rng(seed)
    frames = [(rng.random((H, W, 3)) * 255).astype(np.uint8) for _ in range(T)]
    mask = np.zeros((H, W), np.uint8)
    mask[5:30, 5:40] = ids[0]
    if len(ids) > 1:
        mask[35:65, 50:95] = ids[1]
    return frames, mask


def test_first_frame_is_returned_as_given_and_ids_map_back(tiny_model):
    frames, mask = _video()
    seg = VideoSegmenter(tiny_model)
    probs = seg.step(frames[0], mask)
    assert seg.object_ids == [3, 7]
    assert probs.shape == (3, 70, 101)
    np.testing.assert_array_equal(seg.probs_to_mask(probs), mask)
    out = seg.step(frames[1])
    torch.testing.assert_close(out.sum(0), torch.ones(70, 101))
    assert set(np.unique(seg.probs_to_mask(out))) <= {0, 3, 7}


def test_memory_every_fifth_frame_fifo_and_pinned_first(tiny_model):
    frames, mask = _video(T=1)
    seg = VideoSegmenter(tiny_model, mem_every=5, max_memory_frames=3)
    seg.step(frames[0], mask)
    for _ in range(30):
        seg.step(frames[0])
    slots = seg.streams[0].memory.slots
    assert [s.frame_index for s in slots] == [0, 25, 30]
    assert slots[0].pinned and not slots[1].pinned


def test_top_k_affinity_and_recorded_internals(tiny_model):
    frames, mask = _video(T=7)
    seg = VideoSegmenter(tiny_model, mem_every=2, top_k=3, record=True)
    for t, f in enumerate(frames):
        seg.step(f, mask if t == 0 else None)
    last = seg.last
    assert last.memory_frame_indices == [0, 2, 4]
    nonzero = (last.affinity > 0).sum(0)
    assert torch.all(nonzero <= 3) and torch.all(nonzero >= 1)
    torch.testing.assert_close(last.affinity.sum(0), torch.ones(last.affinity.shape[1]))
    maps = last.affinity_maps(50, 20)
    h, w = last.feature_size
    assert maps.shape == (3, h, w)
    assert last.readout.shape[:2] == (2, tiny_model.cfg.value_dim)
    assert last.instance_queries.shape == (tiny_model.cfg.num_queries, tiny_model.cfg.hidden_dim)
    assert len(last.pixel_features) == 3


def test_object_appearing_mid_video_gets_its_own_group(tiny_model):
    frames, mask = _video(T=8, ids=(3,))
    late = np.zeros_like(mask)
    late[40:60, 60:90] = 9
    seg = VideoSegmenter(tiny_model, mem_every=5)
    seg.step(frames[0], mask)
    seg.step(frames[1])
    probs = seg.step(frames[2], late)
    assert seg.object_ids == [3, 9]
    out = seg.probs_to_mask(probs)
    assert np.all(out[late == 9] == 9)                    # the new object is inserted exactly
    slots = seg.streams[0].memory.slots
    assert [s.frame_index for s in slots] == [0, 2] and slots[1].pinned
    assert [s.value.shape[0] for s in slots] == [1, 2]
    probs = seg.step(frames[3])
    assert probs.shape[0] == 3
    torch.testing.assert_close(probs.sum(0), torch.ones(probs.shape[1:]))


def test_frame_formats_are_accepted():
    rgb = np.random.default_rng(0).integers(0, 255, (9, 11, 3), dtype=np.uint8)
    ref = frame_to_tensor(rgb)
    assert ref.shape == (3, 9, 11)
    torch.testing.assert_close(frame_to_tensor(np.dstack([rgb, np.full((9, 11), 255, np.uint8)])), ref)
    torch.testing.assert_close(frame_to_tensor(rgb.astype(np.float32) / 255), ref)
    torch.testing.assert_close(frame_to_tensor(torch.from_numpy(rgb).permute(2, 0, 1)), ref)
    gray = frame_to_tensor(rgb[..., 0])
    assert gray.shape == (3, 9, 11)
    with pytest.raises(ValueError, match="outside"):
        frame_to_tensor(rgb.astype(np.float32))


def test_bad_inputs_raise_clear_errors(tiny_model):
    frames, mask = _video(T=2)
    seg = VideoSegmenter(tiny_model)
    with pytest.raises(ValueError, match="RGB mask"):
        seg.step(frames[0], np.dstack([mask] * 3))
    seg.reset()
    with pytest.raises(ValueError, match="at least one object"):
        seg.step(frames[0], np.zeros_like(mask))
    seg.reset()
    with pytest.raises(ValueError, match="frame's size"):
        seg.step(frames[0], mask[:-1])
    seg.reset()
    with pytest.raises(ValueError, match=r"objects \[5\] are not in the mask"):
        seg.step(frames[0], mask, objects=[5])
    seg.reset()
    with pytest.raises(ValueError, match="fractional"):
        seg.step(frames[0], mask.astype(np.float32) * 0.5)
    seg.reset()
    seg.step(frames[0], mask)
    with pytest.raises(ValueError, match="resize all frames"):
        seg.step(frames[1][:-2])
    with pytest.raises(ValueError, match="mem_every"):
        VideoSegmenter(tiny_model, mem_every=0)


def test_large_frames_are_processed_at_internal_size(tiny_model):
    frames, mask = _video(T=2, H=80, W=120)
    seg = VideoSegmenter(tiny_model, max_internal_size=40)
    with pytest.warns(UserWarning, match="short side 40"):
        seg.step(frames[0], mask)
    probs = seg.step(frames[1])
    assert probs.shape == (3, 80, 120)
    assert seg.last is None


def test_flip_and_multiscale_average(tiny_model):
    frames, mask = _video(T=3)
    seg = VideoSegmenter(tiny_model, flip=True, scales=(1.0, 0.75))
    assert len(seg.streams) == 4
    seg.step(frames[0], mask)
    probs = seg.step(frames[1])
    torch.testing.assert_close(probs.sum(0), torch.ones(probs.shape[1:]))


def test_segment_video_returns_masks_with_user_ids(tiny_model):
    frames, mask = _video(T=4)
    masks = segment_video(tiny_model, frames, mask, progress=False)
    assert len(masks) == 4 and masks[0].dtype == np.uint8
    np.testing.assert_array_equal(masks[0], mask)


def test_default_precision_is_bf16_only_on_cpus_with_native_bf16(tiny_model, monkeypatch):
    """amp=None picks bf16 autocast where the CPU computes bf16 natively, fp32 elsewhere; an explicit
    choice always wins, and the CLI's --amp / --no-amp map onto it."""
    import argparse

    import isvos_lite.inference as inference
    import isvos_lite.inference.precision as precision
    from isvos_lite.commands import predict

    for native in (True, False):
        monkeypatch.setattr(precision, "native_bf16_cpu", lambda native=native: native)
        assert inference.default_amp("cpu") is native
        assert inference.VideoSegmenter(tiny_model).amp is native
        assert inference.VideoSegmenter(tiny_model, amp=False).amp is False
        assert inference.VideoSegmenter(tiny_model, amp=True).amp is True
    assert inference.default_amp("cuda") is False                      # CUDA: fp16 only when asked for
    parser = argparse.ArgumentParser()
    predict.add_arguments(parser)
    base = ["--checkpoint", "c.safetensors", "--frames", "f", "--mask", "m.png", "--out", "o"]
    assert [parser.parse_args(base + flag).amp for flag in ([], ["--amp"], ["--no-amp"])] == [None, True, False]
    # run records (eval's run.json) say which precision ran, not "default"
    assert predict.segmenter_options(parser.parse_args(base))["amp"] is inference.default_amp("cpu")
    assert predict.segmenter_options(parser.parse_args(base + ["--no-amp"]))["amp"] is False


def test_bf16_autocast_keeps_the_prediction_on_a_cpu():
    """bf16 autocast (the default on CPUs with native bf16) changes the shipped model's probabilities only by
    rounding: no NaN, float32 out, and nearly every pixel keeps its label."""
    from pathlib import Path

    from isvos_lite.checkpoint import load_checkpoint
    from isvos_lite.commands.benchmark import synthetic_video

    model = load_checkpoint(Path(__file__).resolve().parents[1] / "checkpoints" / "lite.safetensors")
    frames = [f for f, _ in zip(synthetic_video(96, 160, 2, seed=1), range(8))]
    out = {}
    for amp in (False, True):
        seg = VideoSegmenter(model, mem_every=2, amp=amp)
        out[amp] = torch.stack([seg.step(frame, mask if t == 0 else None) for t, (frame, mask) in enumerate(frames)])
    assert torch.isfinite(out[True]).all() and out[True].dtype == torch.float32
    difference = (out[True] - out[False]).abs()
    # rounding moves probabilities a little everywhere and more at a few boundary pixels, never a whole region
    assert difference.mean() < 0.005 and difference.max() < 0.25
    assert (out[True].argmax(1) == out[False].argmax(1)).float().mean() > 0.99


def test_precision_note_names_the_precision_and_why(monkeypatch):
    import isvos_lite.inference as inference
    import isvos_lite.inference.precision as precision

    monkeypatch.setattr(precision, "native_bf16_cpu", lambda: True)
    assert inference.precision_note(None) == ("precision: bf16 autocast (the default on a CPU with native bf16; "
                                              "--no-amp for fp32)")
    assert inference.precision_note(False) == "precision: fp32 (--no-amp)"
    assert inference.precision_note(True, "cuda") == "precision: fp16 autocast (--amp)"
    monkeypatch.setattr(precision, "native_bf16_cpu", lambda: False)
    assert inference.precision_note(None) == "precision: fp32 (the default here)"
