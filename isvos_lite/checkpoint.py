"""Model checkpoints: safetensors weights + a JSON sidecar with the config (no pickle needed to load).

``save_checkpoint(model, "checkpoints/lite.safetensors")`` writes
    checkpoints/lite.safetensors   the weights (state dict, float tensors)
    checkpoints/lite.json          {"format": "isvos-lite-checkpoint", "version": 1, "config": {...}, "meta": {...}}
both atomically (temporary file in the same folder + ``os.replace``), weights first, so a reader never sees a JSON
that points at half-written weights.

The full model config is written twice: in the JSON (for people and tools) and in the weights file's own metadata
(``config``). :func:`load_checkpoint` builds the model from the JSON and refuses it, naming the field, when the JSON
says anything else than the weights were trained with (an edited ``qe_tau_max`` would otherwise run silently with
other numbers). Checkpoints written before the weights carried their config (format version 1, e.g. the shipped
ones) get the fields their JSON lacks from their preset, and are checked by what the tensors tell: a mismatch of
names or shapes is explained by the config field that would make them fit (e.g. ``qe_injection``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from isvos_lite.atomic import atomic_path, atomic_write_text
from isvos_lite.config import PRESETS, ModelConfig, config_from_dict

__all__ = ["save_checkpoint", "load_checkpoint", "read_checkpoint_config", "sidecar_path", "atomic_write_text"]

FORMAT = "isvos-lite-checkpoint"
VERSION = 2                        # 2: the weights file's metadata holds the config too
PICKLE_SUFFIXES = (".pth", ".pt", ".pkl", ".ckpt", ".bin", ".tar")


def sidecar_path(weights_path: str | os.PathLike) -> Path:
    return Path(weights_path).with_suffix(".json")


def save_checkpoint(model: torch.nn.Module, path: str | os.PathLike, meta: dict | None = None) -> Path:
    """Write ``model`` (an ISVOS with ``.cfg``) as ``path`` (.safetensors) + its JSON sidecar."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"checkpoint path must end in .safetensors, got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"format": FORMAT, "preset": model.cfg.name,
                                             "config": json.dumps(model.cfg.to_dict(), sort_keys=True)})
    sidecar = {"format": FORMAT, "version": VERSION, "config": model.cfg.to_dict(), "meta": meta or {}}
    atomic_write_text(sidecar_path(path), json.dumps(sidecar, indent=2))
    return path


def read_checkpoint_config(path: str | os.PathLike) -> tuple[ModelConfig, dict]:
    """The config and meta stored next to a checkpoint, with clear errors for missing or foreign files."""
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ValueError(f"checkpoint {path} is a PyTorch / pickle file, not an isvos-lite checkpoint: --checkpoint "
                         f"takes the .safetensors that `isvos-lite train` writes (with its .json), e.g. "
                         f"checkpoints/lite.safetensors. ImageNet ResNet .pth files start a training with "
                         f"`isvos-lite train --init-imagenet` / `--init-imagenet-value`, Mask2Former .pkl files with "
                         f"`--init-mask2former`")
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist; train one with `isvos-lite train` or use "
                                f"checkpoints/lite.safetensors")
    side = sidecar_path(path)
    if not side.exists():
        raise FileNotFoundError(f"checkpoint {path} has no config file {side}; both files are needed "
                                f"(copy the .json written next to the .safetensors)")
    try:
        data = json.loads(side.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{side} is not valid JSON ({err}); the file is damaged: copy it again") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("config"), dict):
        raise ValueError(f"{side} is not an isvos-lite checkpoint config (format={data.get('format')!r})")
    try:
        return config_from_dict(_complete_config(data["config"])), data.get("meta", {})
    except (TypeError, ValueError) as err:
        raise ValueError(f"{side}: its config is not valid ({err}); restore the .json written next to the weights") \
            from None


def _complete_config(config: dict) -> dict:
    """A JSON config with the fields it lacks (written before they existed) taken from its preset."""
    config = dict(config)
    config.setdefault("qe_injection", "literal")     # files from before the injection was a choice: the §3.2 form
    preset = PRESETS.get(config.get("name"))
    if preset is not None:
        for key, value in preset.to_dict().items():
            config.setdefault(key, value)
    return config


def _weights_config(path: Path) -> dict | None:
    """The config stored in the weights file's metadata (format version 2), or None for older files."""
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError):
        return None                                  # a damaged file: load_file says so with its own message
    try:
        return _complete_config(json.loads(metadata["config"])) if "config" in metadata else None
    except (json.JSONDecodeError, TypeError):
        return None


def _describe_differences(ours: dict, theirs: dict) -> list[str]:
    return [f"{key} is {ours.get(key)!r} in the .json but {theirs.get(key)!r} in the weights"
            for key in sorted(set(ours) | set(theirs)) if key != "name" and ours.get(key) != theirs.get(key)]


def _explain_by_config(cfg: ModelConfig, state: dict) -> str | None:
    """The one config change that makes the model's tensors match ``state`` (names and shapes), described, or None."""
    from isvos_lite.model.isvos import ISVOS

    wanted = {k: tuple(v.shape) for k, v in state.items()}
    candidates = [("qe_injection", v) for v in ("cosine", "literal", "identity")]
    candidates += [(k, not getattr(cfg, k)) for k in ("qe_balance", "mask_iou_head", "query_enhancement",
                                                     "multi_path_fusion")]
    candidates += [("preset", name) for name in PRESETS]
    for field, value in candidates:
        if field == "preset":
            other = PRESETS[value].replace(**{k: getattr(cfg, k) for k in ("qe_injection", "qe_balance",
                                                                          "mask_iou_head", "query_enhancement",
                                                                          "multi_path_fusion")})
        elif getattr(cfg, field) == value:
            continue
        else:
            other = cfg.replace(**{field: value})
        try:
            with torch.device("meta"):
                shapes = {k: tuple(v.shape) for k, v in ISVOS(other).state_dict().items()}
        except Exception:                            # a combination the model refuses: not the explanation
            continue
        if shapes == wanted:
            if field == "preset":
                return f"the weights are of preset {value!r} (the .json says {cfg.name!r} sizes)"
            return f"{field} is {getattr(cfg, field)!r} in the .json but the weights fit {field}={value!r}"
    return None


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu", preset: str | None = None,
                    model=None):
    """Build the model described by the sidecar JSON and load the weights.

    ``preset``: if given, the checkpoint must have been trained with that preset (clear error otherwise).
    ``model``: load into this existing model instead (its config must match the checkpoint's).
    Returns the model in eval mode.
    """
    from isvos_lite.model.isvos import ISVOS

    path = Path(path)
    cfg, meta = read_checkpoint_config(path)
    stored = _weights_config(path)
    if stored is not None:
        differences = _describe_differences(_complete_config(cfg.to_dict()), stored)
        if differences:
            raise ValueError(f"{sidecar_path(path)} does not match the weights in {path}: {'; '.join(differences)}. "
                             f"The .json was edited or belongs to another checkpoint: restore the .json written next "
                             f"to these weights")
    if preset is not None and cfg.name != preset:
        raise ValueError(f"checkpoint {path} was trained with preset {cfg.name!r}, not {preset!r}; "
                         f"pass --preset {cfg.name} or pick another checkpoint")
    try:
        state = load_file(str(path), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"cannot read weights from {path} ({err}); the file is truncated or not a safetensors file: "
                         f"download or copy it again") from None
    if model is None:
        model = ISVOS(cfg)
    elif model.cfg.to_dict() != cfg.to_dict():
        fields = [k for k, v in cfg.to_dict().items() if model.cfg.to_dict().get(k) != v]
        raise ValueError(f"checkpoint {path} holds preset {cfg.name!r} with a different configuration than the model "
                         f"given (preset {model.cfg.name!r}; differing: {', '.join(fields)}); build the model from the "
                         f"checkpoint instead")
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected or any(own[k].shape != state[k].shape for k in own if k in state):
        explanation = _explain_by_config(cfg, state)
        if explanation is not None:
            raise ValueError(f"checkpoint {path} does not match its config {sidecar_path(path)}: {explanation}; "
                             f"restore the .json written next to these weights")
    if missing or unexpected:
        raise ValueError(f"checkpoint {path} does not fit the {cfg.name!r} architecture: "
                         f"{len(missing)} missing keys (e.g. {missing[:3]}), {len(unexpected)} unknown keys "
                         f"(e.g. {unexpected[:3]}); was it written by another version of isvos-lite?")
    bad_shape = [k for k in own if own[k].shape != state[k].shape]
    if bad_shape:
        k = bad_shape[0]
        raise ValueError(f"checkpoint {path}: {len(bad_shape)} tensors have the wrong shape, e.g. {k}: "
                         f"{tuple(state[k].shape)} in the file vs {tuple(own[k].shape)} in the model")
    model.load_state_dict(state)
    model.checkpoint_meta = meta
    return model.to(map_location).eval()


INSTANCE_BRANCH_PREFIXES = ("backbone.", "pixel_decoder.", "transformer_decoder.")


def load_instance_branch(path: str | os.PathLike, model, map_location: str | torch.device = "cpu") -> dict:
    """Load only the shared backbone and the IS branch (pixel + transformer decoder) of a checkpoint into ``model``.

    The teaching-world analogue of starting from a COCO-trained Mask2Former (Table 4): the result of an
    ``instance`` training stage initialises any VOS variant (with or without QE / MPF), since those switches
    do not touch these modules. Returns {"loaded": n tensors}; a clear error if a tensor is missing or has
    another shape (another preset). A mask-IoU head that the checkpoint lacks keeps its initial weights.
    """
    path = Path(path)
    cfg, _ = read_checkpoint_config(path)
    try:
        state = load_file(str(path), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"cannot read weights from {path} ({err}); the file is truncated or not a safetensors file") from None
    own = {k: v for k, v in model.state_dict().items() if k.startswith(INSTANCE_BRANCH_PREFIXES)}
    # a mask-IoU head (optional, ModelConfig.mask_iou_head) may be new: it starts from its initial weights
    missing = sorted(k for k in own if k not in state and ".iou_embed." not in k)
    bad_shape = sorted(k for k in own if k in state and state[k].shape != own[k].shape)
    if missing or bad_shape:
        raise ValueError(f"--init-instance {path} (preset {cfg.name!r}) does not fit this model's IS branch: "
                         f"{len(missing)} missing tensors (e.g. {missing[:3]}), {len(bad_shape)} of another shape "
                         f"(e.g. {bad_shape[:3]}); use a checkpoint of the same preset")
    present = {k: state[k] for k in own if k in state}
    model.load_state_dict(present, strict=False)
    return {"loaded": len(present)}
