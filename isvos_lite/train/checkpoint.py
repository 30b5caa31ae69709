"""Training-state checkpoints: everything needed to continue a run exactly where it stopped.

A run directory holds

    <out>/checkpoints/<stage>-<step:07d>/model.safetensors   weights  (isvos_lite.checkpoint format)
                                        /model.json          model config + meta (stage, step, train preset)
                                        /train_state.pt      optimiser, AMP scaler, RNG, curriculum, data position
    <out>/checkpoints/latest.json                             which of those folders is the newest complete one

A checkpoint folder is written under a temporary name and renamed into place when complete; only then is
``latest.json`` (itself written atomically) switched to it, and older folders pruned. A run killed while saving,
or a full disk, therefore never leaves ``latest.json`` pointing at a half-written checkpoint.

``train_state.pt`` holds only tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(weights_only=True)`` (no pickled code).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from isvos_lite.checkpoint import atomic_write_text, load_checkpoint, save_checkpoint

__all__ = [
    "STATE_FORMAT",
    "capture_rng_state",
    "restore_rng_state",
    "save_training_checkpoint",
    "latest_checkpoint_dir",
    "read_training_state",
    "load_training_checkpoint",
]

STATE_FORMAT = "isvos-lite-train-state"
STATE_VERSION = 1
LATEST = "latest.json"


# --- random number generators ------------------------------------------------------------------

def capture_rng_state() -> dict:
    """The state of every RNG the training step touches (torch CPU/CUDA, numpy, python), weights_only-safe."""
    numpy_kind, numpy_keys, numpy_pos, numpy_has_gauss, numpy_gauss = np.random.get_state()
    python_version, python_internal, python_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [numpy_kind, torch.from_numpy(numpy_keys.astype(np.int64)), numpy_pos, numpy_has_gauss, numpy_gauss],
        "python": [python_version, list(python_internal), python_gauss],
    }


def restore_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


# --- saving ------------------------------------------------------------------------------------

def _checkpoint_name(stage: str, step: int) -> str:
    return f"{stage}-{step:07d}"


def save_training_checkpoint(out_dir: str | os.PathLike, model: torch.nn.Module, state: dict, keep: int = 2) -> Path:
    """Write weights + ``state`` as a new checkpoint folder, point ``latest.json`` at it, keep the newest ``keep``.

    ``state`` must contain "stage" and "step" and only weights_only-safe values. Any failure (e.g. a full
    disk) removes the partial folder and raises RuntimeError naming the last good checkpoint, which is untouched.
    """
    root = Path(out_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    name = _checkpoint_name(state["stage"], state["step"])
    final = root / name
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=root))
    try:
        save_checkpoint(model, tmp / "model.safetensors",
                        meta={"stage": state["stage"], "step": state["step"],
                              "train_preset": state.get("train_config", {}).get("name")})
        payload = {"format": STATE_FORMAT, "version": STATE_VERSION, **state}
        torch.save(payload, tmp / "train_state.pt")
        with open(tmp / "train_state.pt", "rb+") as f:
            os.fsync(f.fileno())
        if final.exists():                      # the same step saved again (e.g. end of stage): replace it
            shutil.rmtree(final)
        os.replace(tmp, final)
        atomic_write_text(root / LATEST, json.dumps({"checkpoint": name, "stage": state["stage"],
                                                     "step": state["step"]}, indent=2))
    except (OSError, RuntimeError) as err:
        shutil.rmtree(tmp, ignore_errors=True)
        last = latest_checkpoint_dir(out_dir)
        raise RuntimeError(f"could not write checkpoint {final} ({err}); is the disk full? "
                           f"the last good checkpoint is {last if last else 'none yet'}") from err
    _prune(root, keep)
    return final


def _prune(root: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` complete checkpoint folders, and leftovers of interrupted saves."""
    latest = json.loads((root / LATEST).read_text())["checkpoint"]
    complete = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                      key=lambda p: p.stat().st_mtime)
    for old in complete[:-keep]:
        if old.name != latest:
            shutil.rmtree(old, ignore_errors=True)
    for leftover in root.glob(".*.tmp"):
        shutil.rmtree(leftover, ignore_errors=True)


# --- loading -----------------------------------------------------------------------------------

def latest_checkpoint_dir(out_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint folder of a run, or None when the run has none yet."""
    pointer = Path(out_dir) / "checkpoints" / LATEST
    if not pointer.exists():
        return None
    try:
        name = json.loads(pointer.read_text())["checkpoint"]
    except (json.JSONDecodeError, KeyError) as err:
        raise ValueError(f"{pointer} is damaged ({err}); delete it to resume from scratch") from None
    folder = pointer.parent / name
    if not (folder / "train_state.pt").exists() or not (folder / "model.safetensors").exists():
        raise FileNotFoundError(f"{pointer} names {folder}, which is incomplete or missing; "
                                "delete latest.json to start over, or restore that folder")
    return folder


def read_training_state(folder: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """The training state of a checkpoint folder (without touching any model)."""
    path = Path(folder) / "train_state.pt"
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (OSError, RuntimeError, EOFError) as err:
        raise ValueError(f"cannot read {path} ({err}); the file is damaged") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError(f"{path} is not an isvos-lite training state")
    if state.get("version") != STATE_VERSION:
        raise ValueError(f"{path} has version {state.get('version')}, this isvos-lite reads version {STATE_VERSION}")
    return state


def load_training_checkpoint(folder: str | os.PathLike, model: torch.nn.Module,
                             map_location: str | torch.device = "cpu") -> dict:
    """Load the weights of ``folder`` into ``model`` (in place) and return its training state."""
    state = read_training_state(folder, map_location)
    load_checkpoint(Path(folder) / "model.safetensors", map_location=map_location, model=model)
    return state
