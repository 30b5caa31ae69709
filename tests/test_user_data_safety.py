"""Nothing a user owns is ever lost: --overwrite, inputs as outputs, locks, full disks and SIGTERM.

predict / eval / score / train on a tiny generated world with a random ``tiny`` checkpoint. Each test states the
contract: an output folder's files that a command did not write are never deleted, an ``--out`` that is, holds or
lies inside an input is refused (and ``--overwrite`` is never offered for it), a second run into a folder that
another run is writing fails at once naming that run, and a full disk or SIGTERM ends a command with one line and a
non-zero exit without leaving anything half-written in place.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from isvos_lite.checkpoint import save_checkpoint
from isvos_lite.cli import main
from isvos_lite.data.export import WorldSizes, generate_world
from isvos_lite.data.palette import read_mask, write_frame, write_mask
from isvos_lite.data.world import WorldConfig
from isvos_lite.model.isvos import ISVOS

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world") / "toy"
    config = WorldConfig(height=64, width=96, min_frames=6, max_frames=7, eval_min_frames=6, eval_max_frames=7,
                         max_objects=2)
    generate_world(root, seed=0, config=config,
                   sizes=WorldSizes(train=1, val=2, lookalike=1, heldout=1, youtube_train=1, youtube_valid=1,
                                    coco_train=2, coco_val=2), progress=False)
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_cfg):
    torch.manual_seed(0)
    return save_checkpoint(ISVOS(tiny_cfg), tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


def _clip(folder: Path, frames: int = 4, size=(48, 80)):
    rng = np.random.default_rng(0)
    frame_dir = folder / "frames"
    for t in range(frames):
        write_frame(frame_dir / f"{t:05d}.png", rng.integers(0, 256, size + (3,), dtype=np.uint8))
    mask = np.zeros(size, np.uint8)
    mask[5:20, 10:40] = 1
    write_mask(folder / "first.png", mask)
    return frame_dir, folder / "first.png"


def _cli(argv, capsys):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------------------- predict --overwrite
@pytest.mark.parametrize("where", ["frames", "above", "inside"])
def test_predict_refuses_an_out_that_is_holds_or_lies_inside_the_frames(checkpoint, tmp_path, capsys, where):
    frame_dir, mask = _clip(tmp_path / "project")
    (tmp_path / "project" / "thesis.tex").write_text("years of work")
    (frame_dir / "notes.txt").write_text("mine")
    out = {"frames": frame_dir, "above": tmp_path / "project", "inside": frame_dir / "masks"}[where]
    before = _snapshot(tmp_path / "project")
    code, text = _cli(["predict", "--checkpoint", checkpoint, "--frames", frame_dir, "--mask", mask, "--out", out,
                       "--overwrite"], capsys)
    assert code == 1, text
    assert "--frames" in text and "--overwrite" not in text.split("error:", 1)[1]
    assert _snapshot(tmp_path / "project") == before


def test_predict_overwrite_replaces_only_its_own_masks(checkpoint, tmp_path, capsys):
    frame_dir, mask = _clip(tmp_path / "in", frames=5)
    out = tmp_path / "out"
    code, text = _cli(["predict", "--checkpoint", checkpoint, "--frames", frame_dir, "--mask", mask, "--out", out],
                      capsys)
    assert code == 0, text
    (out / "notes.txt").write_text("my notes about these masks")
    (out / "00000.png").touch()                                    # one of its masks, damaged
    for name in ("00003.png", "00004.png"):                        # the next run has fewer frames
        (frame_dir / name).unlink()
    code, text = _cli(["predict", "--checkpoint", checkpoint, "--frames", frame_dir, "--mask", mask, "--out", out,
                       "--overwrite"], capsys)
    assert code == 0, text
    assert (out / "notes.txt").read_text() == "my notes about these masks"
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == \
        ["00000.png", "00001.png", "00002.png", "notes.txt"]
    np.testing.assert_array_equal(read_mask(out / "00000.png"), read_mask(mask))


def test_predict_overwrite_refuses_a_folder_it_did_not_write(checkpoint, tmp_path, capsys):
    frame_dir, mask = _clip(tmp_path / "in")
    out = tmp_path / "elsewhere"
    out.mkdir()
    (out / "00000.png").write_bytes(b"someone else's mask")
    (out / "thesis.tex").write_text("years of work")
    before = _snapshot(out)
    for extra in ([], ["--overwrite"]):
        code, text = _cli(["predict", "--checkpoint", checkpoint, "--frames", frame_dir, "--mask", mask,
                           "--out", out, *extra], capsys)
        assert code == 1, text
        assert "not written by isvos-lite" in text and "--overwrite" not in text.split("error:", 1)[1]
        assert _snapshot(out) == before


# ---------------------------------------------------------------------------------------------- eval into the dataset
@pytest.mark.parametrize("overwrite", [False, True])
def test_eval_never_writes_into_the_dataset_or_its_ground_truth(world, checkpoint, tmp_path, capsys, overwrite):
    before = _snapshot(world)
    for out in (world / "Annotations" / "480p", world, world / "results"):
        code, text = _cli(["eval", "--checkpoint", checkpoint, "--davis", world, "--out", out, "--workers", "1",
                           *(["--overwrite"] if overwrite else [])], capsys)
        assert code == 1, text
        assert "--davis" in text and "--overwrite" not in text.split("error:", 1)[1]
    assert _snapshot(world) == before


def test_eval_overwrite_keeps_files_it_did_not_write(world, checkpoint, tmp_path, capsys):
    out = tmp_path / "eval"
    argv = ["eval", "--checkpoint", checkpoint, "--davis", world, "--out", out, "--workers", "1", "--no-score"]
    code, text = _cli(argv, capsys)
    assert code == 0, text
    seq = sorted(p for p in out.iterdir() if p.is_dir())[0]
    (seq / "my_notes.txt").write_text("keep me")
    (out / "thesis.tex").write_text("keep me too")
    code, text = _cli(argv + ["--overwrite", "--top-k", "5"], capsys)
    assert code == 0, text
    assert (seq / "my_notes.txt").read_text() == "keep me" and (out / "thesis.tex").read_text() == "keep me too"


# ---------------------------------------------------------------------------------------------- one run per folder
_HOLD_LOCK = textwrap.dedent("""
    import sys, time
    from isvos_lite.outputs import output_lock
    with output_lock(sys.argv[1], "eval"):
        print("locked", flush=True)
        time.sleep(60)
""")


def test_a_second_run_into_a_folder_being_written_fails_at_once_naming_the_first(world, checkpoint, tmp_path,
                                                                                  capsys):
    out = tmp_path / "eval"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(out)], stdout=subprocess.PIPE, text=True,
                              cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "locked"
        start = time.perf_counter()
        code, text = _cli(["eval", "--checkpoint", checkpoint, "--davis", world, "--out", out, "--workers", "1"],
                          capsys)
        assert code == 1, text
        assert "another isvos-lite run" in text and f"pid {holder.pid}" in text and "eval" in text
        assert time.perf_counter() - start < 10
        assert not any(p.is_dir() for p in out.iterdir()) if out.exists() else True
    finally:
        holder.kill()                                      # SIGKILL: the lock must not outlive its process
        holder.wait()
    code, text = _cli(["eval", "--checkpoint", checkpoint, "--davis", world, "--out", out, "--workers", "1",
                       "--no-score"], capsys)
    assert code == 0, text


def test_score_and_predict_take_the_lock_too(world, checkpoint, tmp_path, capsys):
    from isvos_lite.outputs import output_lock

    frame_dir, mask = _clip(tmp_path / "in")
    out = tmp_path / "masks"
    with output_lock(out, "predict"):
        code, text = _cli(["predict", "--checkpoint", checkpoint, "--frames", frame_dir, "--mask", mask,
                           "--out", out], capsys)
        assert code == 1 and "another isvos-lite run" in text, text
    results = tmp_path / "results"
    code, text = _cli(["eval", "--checkpoint", checkpoint, "--davis", world, "--out", results, "--workers", "1",
                       "--no-score"], capsys)
    assert code == 0, text
    with output_lock(results, "eval"):
        code, text = _cli(["score", "--davis", world, "--results", results, "--workers", "1"], capsys)
        assert code == 1 and "another isvos-lite run" in text, text


# ---------------------------------------------------------------------------------------------- full disks
def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device", "/some/where/file.png")


def _one_line_error(text: str, command: str) -> str:
    lines = [line for line in text.splitlines() if line.startswith("isvos-lite")]
    assert len(lines) == 1 and "Traceback" not in text, text
    assert lines[0].startswith(f"isvos-lite {command}: error:")
    return lines[0]


def test_a_full_disk_ends_predict_with_one_line_and_no_half_written_folder(checkpoint, tmp_path, capsys,
                                                                           monkeypatch):
    import isvos_lite.eval.runner as runner

    frame_dir, mask = _clip(tmp_path / "in")
    monkeypatch.setattr(runner, "write_mask", _disk_full)
    code, text = _cli(["predict", "--checkpoint", checkpoint, "--frames", frame_dir, "--mask", mask,
                       "--out", tmp_path / "out"], capsys)
    assert code != 0
    line = _one_line_error(text, "predict")
    assert "no space left" in line.lower() and "rerun" in line
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert not list(tmp_path.glob(".*partial*"))


def test_a_full_disk_ends_eval_score_and_train_with_one_line(world, checkpoint, tmp_path, capsys, monkeypatch):
    import isvos_lite.eval.runner as runner
    import isvos_lite.eval.scorer as scorer

    out = tmp_path / "eval"
    with monkeypatch.context() as patch:
        patch.setattr(runner, "write_mask", _disk_full)
        code, text = _cli(["eval", "--checkpoint", checkpoint, "--davis", world, "--out", out, "--workers", "1"],
                          capsys)
    assert code != 0 and "no space left" in _one_line_error(text, "eval").lower()
    code, text = _cli(["eval", "--checkpoint", checkpoint, "--davis", world, "--out", out, "--workers", "1",
                       "--no-score"], capsys)
    assert code == 0, text                                           # a rerun resumes
    with monkeypatch.context() as patch:
        patch.setattr(scorer, "_write_csv_atomically", _disk_full)
        code, text = _cli(["score", "--davis", world, "--results", out, "--workers", "1"], capsys)
    assert code != 0 and "no space left" in _one_line_error(text, "score").lower()

    import isvos_lite.train.trainer as trainer

    monkeypatch.setattr(trainer, "save_training_checkpoint", _disk_full)
    code, text = _cli(["train", "--preset", "lite", "--data", world, "--out", tmp_path / "run", "--stage", "main",
                       "--iters", "1", "--batch-size", "1", "--instance-every", "0", "--val-every", "0",
                       "--device", "cpu", "--quiet", "--workers", "0"], capsys)
    assert code != 0 and "no space left" in _one_line_error(text, "train").lower()


_LIMITED_WRITES = textwrap.dedent("""
    import resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)         # a write past the limit fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (60, 60))
    from isvos_lite.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def test_a_real_failing_write_ends_predict_with_one_line(checkpoint, tmp_path):
    frame_dir, mask = _clip(tmp_path / "in")
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-c", _LIMITED_WRITES, "predict", "--checkpoint", str(checkpoint),
                           "--frames", str(frame_dir), "--mask", str(mask), "--out", str(out), "--threads", "1"],
                          capture_output=True, text=True, cwd=REPO, timeout=240)
    assert done.returncode not in (0, -signal.SIGXFSZ), done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("isvos-lite")]
    assert len(errors) == 1 and "too large" in errors[0].lower(), done.stderr
    assert not out.exists() or not [p for p in out.iterdir() if p.suffix == ".png"]


# ---------------------------------------------------------------------------------------------- SIGTERM
_TERMINATE_MID_RUN = textwrap.dedent("""
    import os, signal, sys
    import isvos_lite.eval.runner as runner
    written = []
    original = runner.write_mask
    def write_then_terminate(path, mask):
        original(path, mask)
        written.append(path)
        if len(written) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
    runner.write_mask = write_then_terminate
    from isvos_lite.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def test_sigterm_ends_predict_with_one_line_and_leaves_no_partial_folders(checkpoint, tmp_path):
    frame_dir, mask = _clip(tmp_path / "in", frames=6)
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-c", _TERMINATE_MID_RUN, "predict", "--checkpoint", str(checkpoint),
                           "--frames", str(frame_dir), "--mask", str(mask), "--out", str(out), "--threads", "1"],
                          capture_output=True, text=True, cwd=REPO, timeout=240)
    assert done.returncode == 128 + signal.SIGTERM, (done.returncode, done.stderr)
    errors = [line for line in done.stderr.splitlines() if line.startswith("isvos-lite")]
    assert len(errors) == 1 and "terminated" in errors[0], done.stderr
    leftovers = [p.name for p in tmp_path.rglob("*") if ".partial-" in p.name or p.name.endswith(".lock")]
    assert leftovers == []
    assert not out.exists() or not any(out.iterdir())
