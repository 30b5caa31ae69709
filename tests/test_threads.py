"""The CPU-thread default (fewer threads on a busy machine) and --threads of demo / predict / eval."""

import numpy as np
import pytest
import torch
from PIL import Image

from isvos_lite.cli import build_parser, main
from isvos_lite.threads import ENV_VAR, default_threads, resolve_threads


@pytest.mark.parametrize("cores, load, expected", [
    (2, 0.0, 2),        # idle laptop: every core
    (2, 2.6, 1),        # two trainings beside us: one thread, never zero
    (16, 0.3, 4),       # a big idle machine: at most 4
    (16, 14.0, 2),      # a big busy one: what is left
    (1, 5.0, 1),
])
def test_default_threads_leave_busy_cores_alone(cores, load, expected):
    assert default_threads(cores, load) == expected


def test_threads_from_the_option_the_environment_or_the_default(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "3")
    assert resolve_threads(None) == (3, ENV_VAR)
    assert resolve_threads(2) == (2, "--threads")
    monkeypatch.setenv(ENV_VAR, "many")
    with pytest.raises(ValueError, match=f"{ENV_VAR}='many' is not a whole number"):
        resolve_threads(None)
    monkeypatch.delenv(ENV_VAR)
    threads, why = resolve_threads(None)
    assert threads == default_threads() and "choose with --threads N" in why
    with pytest.raises(ValueError, match="--threads must be >= 1"):
        resolve_threads(0)


@pytest.mark.parametrize("command", ["demo", "predict", "eval"])
def test_commands_that_run_a_model_take_threads(command):
    parser = build_parser(only=command)
    required = {"demo": [], "predict": ["--checkpoint", "c", "--frames", "f", "--mask", "m", "--out", "o"],
                "eval": ["--checkpoint", "c", "--davis", "d", "--out", "o"]}[command]
    assert parser.parse_args([command, *required, "--threads", "2"]).threads == 2


def test_predict_sets_the_threads_it_was_given(tmp_path, capsys):
    before = torch.get_num_threads()
    frames = tmp_path / "frames"
    frames.mkdir()
    for t in range(2):
        Image.fromarray(np.zeros((32, 48, 3), np.uint8)).save(frames / f"{t:05d}.jpg")
    mask = np.zeros((32, 48), np.uint8)
    mask[8:20, 10:30] = 1
    Image.fromarray(mask, "L").save(tmp_path / "mask.png")
    try:
        code = main(["predict", "--checkpoint", str(tmp_path / "missing.safetensors"), "--frames", str(frames),
                     "--mask", str(tmp_path / "mask.png"), "--out", str(tmp_path / "out"), "--threads", "2"])
        assert code == 1                                                  # the checkpoint is missing ...
        assert "torch threads: 2 (--threads)" in capsys.readouterr().out  # ... but the threads were set first
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
