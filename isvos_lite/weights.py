"""Import pretrained weights from public checkpoint layouts into our modules.

The paper starts from ImageNet ResNets and the COCO Mask2Former model (§4.1). Neither can be downloaded
by this package: you download the files yourself and point these loaders at them.

* :func:`load_torchvision_resnet` — a torchvision ResNet state dict (``resnet50-*.pth`` pickle or a
  ``.safetensors`` file). Our :class:`~isvos_lite.model.backbone.ResNet` uses torchvision's names, so the
  keys load as they are; ``fc.*`` is dropped. A 5-channel value-encoder conv1 (RGB, mask, other objects)
  fed a 3-channel ImageNet conv1 gets the RGB filters copied and the 2 extra input channels set to zero,
  so the pretrained network starts by ignoring the masks (XMem's zero init, https://github.com/hkchengrex/XMem).
* :func:`load_mask2former_detectron2` — detectron2's ``model_final_*.pkl`` of Mask2Former (e.g. the COCO
  R50 instance model ``model_final_3c8ec9.pkl``): backbone, pixel decoder and transformer decoder. The pickle is
  read by a restricted unpickler (:class:`ModelZooUnpickler`) that builds only plain containers, numbers, strings
  and numpy arrays — what that file holds — and refuses anything else before it can run (a plain
  ``pickle.load`` runs whatever code a crafted file names; https://docs.python.org/3/library/pickle.html
  "Restricting Globals").

Each returns a :class:`LoadReport` listing what matched, what the model still lacks, what the file had that
the model does not use, and what was skipped because of a shape difference (with the reason).
"""

from __future__ import annotations

import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from torch import nn

__all__ = ["LoadReport", "load_torchvision_resnet", "load_mask2former_detectron2", "detectron2_to_ours",
           "ModelZooUnpickler"]


@dataclass
class LoadReport:
    """What a weight import did. Names are the model's names (for ``missing``) or the file's (otherwise).

    matched: tensors copied into the model.  missing: model tensors the file did not provide (left as they were).
    unexpected: file tensors that map to nothing in the model.  skipped_shape: ``"name: reason"`` for file
    tensors whose shape does not fit.  dropped: file tensors ignored on purpose (e.g. ``fc.*``), with the reason.
    adapted: ``"name: how"`` for tensors copied after an adaptation (e.g. a 3 -> 5 channel conv1).
    """

    matched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    skipped_shape: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)

    def summary(self, max_names: int = 8) -> str:
        lines = [f"matched {len(self.matched)}, missing {len(self.missing)}, unexpected {len(self.unexpected)}, "
                 f"skipped (shape) {len(self.skipped_shape)}, dropped {len(self.dropped)}, "
                 f"adapted {len(self.adapted)}"]
        for title, names in (("missing", self.missing), ("unexpected", self.unexpected),
                             ("skipped (shape)", self.skipped_shape), ("adapted", self.adapted)):
            if names:
                lines.append(f"  {title}:")
                lines += [f"    {name}" for name in names[:max_names]]
                if len(names) > max_names:
                    lines.append(f"    ... ({len(names) - max_names} more)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


# ----------------------------------------------------------------------------------------------------
# Shared machinery: copy named tensors into modules and fill the report.
# ----------------------------------------------------------------------------------------------------

def _copy_into(modules: Mapping[str, nn.Module], incoming: dict[str, tuple[str, torch.Tensor]],
               report: LoadReport, allow_input_channel_padding: bool = False) -> None:
    """Copy ``incoming[our_full_name] = (file_name, tensor)`` into ``modules`` (prefix -> module).

    Our full name is ``prefix + "." + state-dict key`` (or the bare key for prefix ""). Every module is
    reloaded with ``strict=True`` from its own state dict updated with the matched tensors."""
    used: set[str] = set()
    for prefix, module in modules.items():
        state = module.state_dict()
        for key, current in state.items():
            full = f"{prefix}.{key}" if prefix else key
            if full not in incoming:
                report.missing.append(full)
                continue
            used.add(full)
            source_name, tensor = incoming[full]
            if tuple(tensor.shape) == tuple(current.shape):
                state[key] = tensor.to(dtype=current.dtype)
                report.matched.append(source_name)
            elif (allow_input_channel_padding and tensor.dim() == 4 and current.dim() == 4
                  and tensor.shape[0] == current.shape[0] and tensor.shape[2:] == current.shape[2:]
                  and tensor.shape[1] < current.shape[1]):
                padded = torch.zeros_like(current)
                padded[:, :tensor.shape[1]] = tensor.to(dtype=current.dtype)
                state[key] = padded
                report.matched.append(source_name)
                report.adapted.append(f"{source_name}: {tensor.shape[1]} -> {current.shape[1]} input channels, "
                                      f"the first {tensor.shape[1]} copied, the extra ones zero")
            else:
                report.skipped_shape.append(f"{source_name}: file has shape {tuple(tensor.shape)}, "
                                            f"model {full} has {tuple(current.shape)}")
        module.load_state_dict(state, strict=True)
    report.unexpected.extend(name for full, (name, _) in incoming.items() if full not in used)


def _fail_if_nothing_matched(report: LoadReport, source: str, expected_layout: str) -> None:
    if not report.matched:
        detail = f" ({len(report.skipped_shape)} names matched but every shape differed)" if report.skipped_shape else ""
        raise ValueError(f"{source}: no tensor matched the model{detail}. Expected {expected_layout}. "
                         f"First names in the file: {(report.unexpected + report.skipped_shape)[:5]}")


# ----------------------------------------------------------------------------------------------------
# torchvision ResNet
# ----------------------------------------------------------------------------------------------------

TORCHVISION_LAYOUT = ("a torchvision ResNet state dict with keys like 'conv1.weight', 'bn1.running_mean', "
                      "'layer1.0.conv1.weight', 'layer2.0.downsample.1.running_var' (.pth or .safetensors)")


def _read_state_dict(path_or_state_dict) -> tuple[dict[str, torch.Tensor], str]:
    """A flat name -> tensor dict from a file or a dict, plus a name for messages."""
    if isinstance(path_or_state_dict, Mapping):
        return dict(path_or_state_dict), "the given state dict"
    path = Path(path_or_state_dict)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path), device="cpu"), str(path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # not a torch file, or a pickled module instead of a state dict
        raise ValueError(f"{path}: could not read it as a torch state dict with weights_only=True ({error}); "
                         f"expected {TORCHVISION_LAYOUT}") from error
    for wrapper in ("state_dict", "model"):   # common training-checkpoint wrappers
        if isinstance(loaded, Mapping) and isinstance(loaded.get(wrapper), Mapping):
            loaded = loaded[wrapper]
    if not isinstance(loaded, Mapping):
        raise ValueError(f"{path}: holds a {type(loaded).__name__}, expected {TORCHVISION_LAYOUT}")
    return {k.removeprefix("module."): v for k, v in loaded.items() if isinstance(v, torch.Tensor)}, str(path)


def load_torchvision_resnet(resnet: nn.Module, path_or_state_dict, verbose: bool = True) -> LoadReport:
    """Load torchvision ImageNet weights into our ``ResNet`` (same key names; ``fc.*`` dropped).

    * stages the model does not build (``num_stages=3`` drops ``layer4.*``) are dropped, not unexpected;
    * ``num_batches_tracked`` is dropped when the model uses frozen BatchNorm (which keeps no counter);
    * a conv1 with more input channels than the file's (the 5-channel value encoder) gets the file's
      channels copied and the extra channels set to zero (reported in ``adapted``).

    Raises FileNotFoundError for a missing file and ValueError when nothing matches.
    """
    state, source = _read_state_dict(path_or_state_dict)
    report = LoadReport()
    ours = resnet.state_dict()
    built_stages = getattr(resnet, "num_stages", 4)
    incoming: dict[str, tuple[str, torch.Tensor]] = {}
    for name, tensor in state.items():
        stage = re.match(r"layer(\d)\.", name)
        if name.startswith("fc."):
            report.dropped.append(f"{name}: ImageNet classifier, not part of the backbone")
        elif stage and int(stage.group(1)) > built_stages:
            report.dropped.append(f"{name}: the model builds only layer1..layer{built_stages}")
        elif name.endswith("num_batches_tracked") and name not in ours:
            report.dropped.append(f"{name}: frozen BatchNorm keeps no batch counter")
        else:
            incoming[name] = (name, tensor)
    _copy_into({"": resnet}, incoming, report, allow_input_channel_padding=True)
    _fail_if_nothing_matched(report, source, TORCHVISION_LAYOUT)
    if verbose:
        print(f"load_torchvision_resnet({source}): {report.summary()}")
    return report


# ----------------------------------------------------------------------------------------------------
# detectron2 Mask2Former checkpoint
# ----------------------------------------------------------------------------------------------------

D2_LAYOUT = ("detectron2's Mask2Former model_final_*.pkl: a pickled dict {'model': {name: numpy array}} with "
             "names like 'backbone.res2.0.conv1.weight', 'sem_seg_head.pixel_decoder.input_proj.0.0.weight', "
             "'sem_seg_head.predictor.query_feat.weight'")

# (pattern on the detectron2 name, replacement giving "<module>.<our key>"), tried in order.
_D2_RULES: list[tuple[str, str]] = [
    # backbone: stem
    (r"^backbone\.stem\.conv1\.weight$", r"backbone.conv1.weight"),
    (r"^backbone\.stem\.conv1\.norm\.(\w+)$", r"backbone.bn1.\1"),
    # backbone: residual blocks, res{s} = layer{s-1} (the stage index is fixed below)
    (r"^backbone\.res(\d)\.(\d+)\.conv(\d)\.weight$", r"backbone.layer<\1>.\2.conv\3.weight"),
    (r"^backbone\.res(\d)\.(\d+)\.conv(\d)\.norm\.(\w+)$", r"backbone.layer<\1>.\2.bn\3.\4"),
    (r"^backbone\.res(\d)\.(\d+)\.shortcut\.weight$", r"backbone.layer<\1>.\2.downsample.0.weight"),
    (r"^backbone\.res(\d)\.(\d+)\.shortcut\.norm\.(\w+)$", r"backbone.layer<\1>.\2.downsample.1.\3"),
    # pixel decoder
    (r"^sem_seg_head\.pixel_decoder\.input_proj\.(.+)$", r"pixel_decoder.input_proj.\1"),
    (r"^sem_seg_head\.pixel_decoder\.transformer\.level_embed$", r"pixel_decoder.level_embed"),
    (r"^sem_seg_head\.pixel_decoder\.transformer\.encoder\.layers\.(.+)$", r"pixel_decoder.encoder_layers.\1"),
    (r"^sem_seg_head\.pixel_decoder\.adapter_1\.weight$", r"pixel_decoder.lateral_conv.0.weight"),
    (r"^sem_seg_head\.pixel_decoder\.adapter_1\.norm\.(\w+)$", r"pixel_decoder.lateral_conv.1.\1"),
    (r"^sem_seg_head\.pixel_decoder\.layer_1\.weight$", r"pixel_decoder.output_conv.0.weight"),
    (r"^sem_seg_head\.pixel_decoder\.layer_1\.norm\.(\w+)$", r"pixel_decoder.output_conv.1.\1"),
    (r"^sem_seg_head\.pixel_decoder\.mask_features\.(\w+)$", r"pixel_decoder.mask_features.\1"),
    # transformer decoder (same names, except the prediction heads live in instance_head)
    (r"^sem_seg_head\.predictor\.(class_embed|mask_embed)\.(.+)$", r"transformer_decoder.instance_head.\1.\2"),
    (r"^sem_seg_head\.predictor\.(.+)$", r"transformer_decoder.\1"),
]

_D2_IGNORED = {
    "criterion.empty_weight": "loss class weights (no-object = 0.1), not a model weight",
    "pixel_mean": "input normalisation; our model applies ImageNet mean/std itself",
    "pixel_std": "input normalisation; our model applies ImageNet mean/std itself",
}


def detectron2_to_ours(name: str) -> str | None:
    """Our ``"<module>.<key>"`` for a detectron2 Mask2Former name, or None if it maps to nothing."""
    for pattern, replacement in _D2_RULES:
        if re.match(pattern, name):
            mapped = re.sub(pattern, replacement, name)
            return re.sub(r"layer<(\d)>", lambda m: f"layer{int(m.group(1)) - 1}", mapped)
    return None


class RefusedPickle(pickle.UnpicklingError):
    """A pickle asked for a global (a class or function) outside the model-zoo allow-list."""


class ModelZooUnpickler(pickle.Unpickler):
    """Unpickles only what detectron2 model-zoo checkpoints hold: dicts, lists, tuples, numbers, strings, bytes
    and numpy arrays / scalars / dtypes (``OrderedDict`` too). Every other global is refused by name, before it is
    imported or called, so a crafted file cannot run code."""

    ALLOWED = {
        ("collections", "OrderedDict"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),               # how Python 3 pickles bytes in protocol 2 (numpy array payloads)
        ("builtins", "bytearray"), ("__builtin__", "bytearray"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise RefusedPickle(f"{module}.{name}")


def _read_detectron2_pickle(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise FileNotFoundError(f"detectron2 checkpoint not found: {path}")
    try:
        with open(path, "rb") as f:
            data = ModelZooUnpickler(f, encoding="latin1").load()
    except RefusedPickle as refused:
        raise ValueError(f"{path}: the pickle asks for {refused}, which a Mask2Former model-zoo checkpoint never "
                         f"holds; refused (nothing in it was run). Expected {D2_LAYOUT}. Download the file again "
                         "from the Mask2Former model zoo") from None
    except Exception as error:
        raise ValueError(f"{path}: could not unpickle it ({error}); expected {D2_LAYOUT}") from error
    if isinstance(data, Mapping) and isinstance(data.get("model"), Mapping):
        data = data["model"]
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: holds a {type(data).__name__}, expected {D2_LAYOUT}")
    return {k: v for k, v in data.items() if isinstance(v, np.ndarray)}


def load_mask2former_detectron2(path_pkl, backbone: nn.Module | None, pixel_decoder: nn.Module | None,
                                transformer_decoder: nn.Module | None, verbose: bool = True) -> LoadReport:
    """Load a detectron2 Mask2Former checkpoint into our backbone, pixel decoder and transformer decoder.

    Mapping: ``backbone.stem.conv1(.norm)`` -> ``conv1``/``bn1``; ``backbone.res{s}.{i}.conv{k}(.norm)`` ->
    ``layer{s-1}.{i}.conv{k}``/``bn{k}``; ``.shortcut(.norm)`` -> ``downsample.0``/``.1``;
    ``sem_seg_head.pixel_decoder.*`` -> :class:`MSDeformAttnPixelDecoder` (``transformer.encoder.layers`` ->
    ``encoder_layers``, ``adapter_1`` -> ``lateral_conv``, ``layer_1`` -> ``output_conv``);
    ``sem_seg_head.predictor.*`` -> :class:`MaskedTransformerDecoder` (class/mask heads in ``instance_head``).
    A class head for a different class count is skipped (``skipped_shape`` says why) and keeps its init.
    Pass None for a module you do not want to load; its tensors are then dropped.

    The Mask2Former model zoo's R50 was trained on RGB input with ImageNet mean/std, matching our
    normalisation contract. The file is read by :class:`ModelZooUnpickler` (no code in it can run).
    """
    path = Path(path_pkl)
    arrays = _read_detectron2_pickle(path)
    modules = {name: module for name, module in (("backbone", backbone), ("pixel_decoder", pixel_decoder),
                                                 ("transformer_decoder", transformer_decoder)) if module is not None}
    if not modules:
        raise ValueError("load_mask2former_detectron2: pass at least one of backbone, pixel_decoder, transformer_decoder")
    report = LoadReport()
    incoming: dict[str, tuple[str, torch.Tensor]] = {}
    for name, array in arrays.items():
        ours = detectron2_to_ours(name)
        if name in _D2_IGNORED:
            report.dropped.append(f"{name}: {_D2_IGNORED[name]}")
        elif ours is None:
            report.unexpected.append(name)
        elif ours.split(".", 1)[0] not in modules:
            report.dropped.append(f"{name}: no {ours.split('.', 1)[0]} module was given")
        else:
            incoming[ours] = (name, torch.as_tensor(np.ascontiguousarray(array)) if isinstance(array, np.ndarray)
                              else array)
    _copy_into(modules, incoming, report)
    report.skipped_shape = [_explain_class_head(entry) for entry in report.skipped_shape]
    _fail_if_nothing_matched(report, str(path), D2_LAYOUT)
    if verbose:
        print(f"load_mask2former_detectron2({os.fspath(path)}): {report.summary()}")
    return report


def _explain_class_head(entry: str) -> str:
    """Add the reason to a skipped class head: its rows are K + 1 classes (the last is 'no object')."""
    match = re.match(r"^(sem_seg_head\.predictor\.class_embed\.\w+): file has shape \((\d+),?.*model .* has \((\d+),?", entry)
    if not match:
        return entry
    file_k, model_k = int(match.group(2)) - 1, int(match.group(3)) - 1
    return (f"{entry} -- the checkpoint predicts {file_k} classes + no-object, the model {model_k} + no-object; "
            f"the class head keeps its initialisation and must be trained")
