"""Files a user hands in never run code, and a checkpoint's JSON can never silently change the model.

* ``--init-mask2former`` reads detectron2's ``.pkl`` through a restricted unpickler: plain containers and numpy
  arrays only; anything else is refused, naming what it asked for, before it can run.
* A checkpoint carries its full model config twice (the JSON sidecar and the weights file's own metadata); an
  edited or swapped JSON is refused naming the field, and checkpoints written before the weights carried their
  config (the shipped ones) still load, with what the tensors can tell checked.
"""

from __future__ import annotations

import collections
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from isvos_lite.checkpoint import load_checkpoint, read_checkpoint_config, save_checkpoint
from isvos_lite.config import get_preset
from isvos_lite.model.isvos import ISVOS
from isvos_lite.weights import load_mask2former_detectron2

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------- restricted unpickling
class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _small_modules():
    cfg = get_preset("tiny")
    model = ISVOS(cfg)
    return model.backbone, model.pixel_decoder, model.transformer_decoder


@pytest.mark.parametrize("where", ["top", "nested", "in_model"])
def test_a_crafted_mask2former_pickle_is_refused_before_it_runs(tmp_path, where):
    marker = tmp_path / "pwned"
    payload = _Payload(marker)
    data = {"top": payload, "nested": {"model": {"x": [payload]}},
            "in_model": {"model": {"backbone.stem.conv1.weight": payload}}}[where]
    path = tmp_path / "model_final_evil.pkl"
    path.write_bytes(pickle.dumps(data, protocol=2))
    with pytest.raises(ValueError, match=r"model_final_evil\.pkl.*(posix|os|nt)\.system.*refused"):
        load_mask2former_detectron2(path, *_small_modules(), verbose=False)
    assert not marker.exists()


def test_the_model_zoo_layout_still_loads_through_the_restricted_unpickler(tmp_path):
    backbone, pixel, decoder = _small_modules()
    weights = collections.OrderedDict(
        (f"backbone.{k.replace('conv1.weight', 'stem.conv1.weight')}", v.numpy()) for k, v in
        backbone.state_dict().items() if k == "conv1.weight")
    weights["pixel_mean"] = np.zeros(3, np.float32)
    data = {"model": weights, "__author__": "Mask2Former", "matching_heuristics": True, "step": np.int64(3)}
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        path = tmp_path / f"p{protocol}.pkl"
        path.write_bytes(pickle.dumps(data, protocol=protocol))
        report = load_mask2former_detectron2(path, backbone, pixel, decoder, verbose=False)
        assert report.matched == ["backbone.stem.conv1.weight"]


def test_a_pickle_of_torch_objects_is_refused_by_name(tmp_path):
    path = tmp_path / "torch.pkl"
    path.write_bytes(pickle.dumps({"model": {"a": torch.zeros(2)}}))
    with pytest.raises(ValueError, match=r"torch\.pkl.*torch.*refused"):
        load_mask2former_detectron2(path, *_small_modules(), verbose=False)


# ---------------------------------------------------------------------------------------------- checkpoint config
def _edit_config(path: Path, **changes) -> None:
    side = path.with_suffix(".json")
    data = json.loads(side.read_text())
    data["config"].update(changes)
    side.write_text(json.dumps(data, indent=2))


@pytest.mark.parametrize("field, value", [("qe_tau_max", 8.0), ("qe_balance", True), ("qe_tau_init", 1.0),
                                          ("num_classes", 5)])
def test_an_edited_checkpoint_json_is_refused_naming_the_field(tmp_path, field, value):
    torch.manual_seed(0)
    path = save_checkpoint(ISVOS(get_preset("tiny")), tmp_path / "m.safetensors")
    load_checkpoint(path)                                                   # untouched: loads
    _edit_config(path, **{field: value})
    with pytest.raises(ValueError, match=rf"{field}") as error:
        load_checkpoint(path)
    assert "another version" not in str(error.value) and "m.json" in str(error.value)


def test_an_injection_mismatch_is_named_not_blamed_on_a_version(tmp_path):
    torch.manual_seed(0)
    path = save_checkpoint(ISVOS(get_preset("tiny", qe_injection="literal")), tmp_path / "lit.safetensors")
    _edit_config(path, qe_injection="cosine")
    with pytest.raises(ValueError, match="qe_injection") as error:
        load_checkpoint(path)
    assert "another version" not in str(error.value)


def test_an_older_checkpoint_without_config_in_its_weights_is_checked_from_its_tensors(tmp_path):
    """A checkpoint as the shipped ones are: no config in the weights file, a JSON without the newer fields."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = ISVOS(get_preset("tiny", qe_injection="literal"))
    path = tmp_path / "old.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path),
              metadata={"format": "isvos-lite-checkpoint", "preset": "tiny"})
    config = model.cfg.to_dict()
    for newer in ("qe_tau_init", "qe_balance", "mask_iou_head"):
        config.pop(newer)
    path.with_suffix(".json").write_text(json.dumps({"format": "isvos-lite-checkpoint", "version": 1,
                                                     "config": config, "meta": {}}))
    assert load_checkpoint(path).cfg.qe_injection == "literal"
    _edit_config(path, qe_injection="cosine")
    with pytest.raises(ValueError, match=r"qe_injection.*'literal'") as error:
        load_checkpoint(path)
    assert "another version" not in str(error.value)


def test_the_shipped_checkpoints_keep_loading():
    for path in sorted((REPO / "checkpoints").glob("*.safetensors")):
        model = load_checkpoint(path)
        assert model.cfg.name == "lite"


def test_a_pth_given_as_checkpoint_is_told_what_to_pass(tmp_path):
    path = tmp_path / "resnet50-0676ba61.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="--init-imagenet") as error:
        read_checkpoint_config(path)
    assert "copy the .json" not in str(error.value)
