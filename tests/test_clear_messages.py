"""Small things a user meets first: the messages for a wrong-size mask, a wrong device, a wrong-size frame."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from isvos_lite.checkpoint import save_checkpoint
from isvos_lite.cli import main
from isvos_lite.data.palette import write_frame, write_mask
from isvos_lite.model.isvos import ISVOS


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_cfg):
    torch.manual_seed(0)
    return save_checkpoint(ISVOS(tiny_cfg), tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


def _frames(folder, sizes):
    rng = np.random.default_rng(0)
    for t, size in enumerate(sizes):
        write_frame(folder / "frames" / f"{t:05d}.png", rng.integers(0, 256, size + (3,), dtype=np.uint8))
    return folder / "frames"


def _cli(argv, capsys):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_a_wrong_size_mask_names_the_first_frame_once(checkpoint, tmp_path, capsys):
    frames = _frames(tmp_path, [(48, 80)] * 3)
    write_mask(tmp_path / "first.png", np.ones((24, 40), np.uint8))
    code, text = _cli(["predict", "--checkpoint", checkpoint, "--frames", frames, "--mask", tmp_path / "first.png",
                       "--out", tmp_path / "out"], capsys)
    assert code == 1
    assert "frames frame" not in text
    assert f"its frame {frames / '00000.png'} is 80x48" in text


def test_an_unknown_device_is_one_clear_line(checkpoint, tmp_path, capsys):
    frames = _frames(tmp_path, [(48, 80)] * 2)
    write_mask(tmp_path / "first.png", np.ones((48, 80), np.uint8))
    code, text = _cli(["predict", "--checkpoint", checkpoint, "--frames", frames, "--mask", tmp_path / "first.png",
                       "--out", tmp_path / "out", "--device", "gpu"], capsys)
    assert code == 1
    assert "--device gpu" in text and "cpu" in text and "xla" not in text and "Expected one of" not in text


def test_a_frame_of_another_size_is_found_before_any_work(checkpoint, tmp_path, capsys, monkeypatch):
    import isvos_lite.checkpoint as ckpt

    frames = _frames(tmp_path, [(48, 80)] * 3 + [(50, 80)])
    write_mask(tmp_path / "first.png", np.ones((48, 80), np.uint8))

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the frames were checked")

    monkeypatch.setattr(ckpt, "load_checkpoint", no_model)
    code, text = _cli(["predict", "--checkpoint", checkpoint, "--frames", frames, "--mask", tmp_path / "first.png",
                       "--out", tmp_path / "out"], capsys)
    assert code == 1
    assert "00003.png is 80x50" in text
    assert not (tmp_path / "out").exists()
