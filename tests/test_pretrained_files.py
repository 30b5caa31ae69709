"""The public pretrained files against the paper-sized model, and the train options that take them.

``tests/data/*_keys.txt`` list every tensor (name and shape) of the files users download: torchvision's
``resnet50`` / ``resnet18`` state dicts (written from torchvision 0.29.1's own ``resnet.py``) and detectron2's
Mask2Former R50 COCO instance model (written out from the public Mask2Former / detectron2 definitions, see the
file's header). Synthetic files with exactly those names and shapes, in the files' own formats (a ``.pth`` of
tensors; a pickle of ``{"model": {name: numpy array}}``), are loaded into the ``paper`` preset."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from isvos_lite.config import get_preset
from isvos_lite.model.isvos import ISVOS
from isvos_lite.weights import detectron2_to_ours, load_mask2former_detectron2, load_torchvision_resnet

DATA = Path(__file__).parent / "data"


def key_list(name: str) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for line in (DATA / name).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, shape = line.split()
            shapes[key] = () if shape == "scalar" else tuple(int(d) for d in shape.split("x"))
    return shapes


@pytest.fixture(scope="module")
def paper_model():
    torch.manual_seed(0)
    return ISVOS(get_preset("paper"))


def test_key_lists_are_the_public_layouts():
    r50, m2f = key_list("torchvision_resnet50_keys.txt"), key_list("mask2former_r50_coco_instance_keys.txt")
    assert len(r50) == 320 and r50["fc.weight"] == (1000, 2048) and r50["layer4.2.bn3.num_batches_tracked"] == ()
    assert len(m2f) == 558 and m2f["sem_seg_head.predictor.class_embed.weight"] == (81, 256)
    params = sum(int(np.prod(s)) for k, s in m2f.items() if "running_" not in k and k != "criterion.empty_weight")
    assert params == pytest.approx(44.0e6, rel=0.01)          # Mask2Former R50: 44 M parameters


def test_every_mask2former_key_maps_onto_the_paper_model_with_its_shape(paper_model):
    ours = {f"{m}.{k}": v.shape for m in ("backbone", "pixel_decoder", "transformer_decoder")
            for k, v in getattr(paper_model, m).state_dict().items()}
    mapped = {}
    for name, shape in key_list("mask2former_r50_coco_instance_keys.txt").items():
        if name == "criterion.empty_weight":
            continue
        target = detectron2_to_ours(name)
        assert target in ours, f"{name} -> {target}: not in the model"
        assert tuple(ours[target]) == shape, f"{name}: file {shape}, model {tuple(ours[target])}"
        assert target not in mapped, f"{name} and {mapped.get(target)} map to the same tensor {target}"
        mapped[target] = name
    assert sorted(set(ours) - set(mapped)) == []                # nothing of the IS branch stays random


def test_mask2former_pickle_loads_completely(paper_model, tmp_path):
    rng = np.random.default_rng(0)
    model = {name: rng.standard_normal(shape).astype(np.float16)      # float16 keeps the file small
             for name, shape in key_list("mask2former_r50_coco_instance_keys.txt").items()}
    path = tmp_path / "model_final_3c8ec9.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": model, "__author__": "test"}, f)
    report = load_mask2former_detectron2(path, paper_model.backbone, paper_model.pixel_decoder,
                                         paper_model.transformer_decoder, verbose=False)
    assert (report.missing, report.unexpected, report.skipped_shape) == ([], [], [])
    assert len(report.matched) == 557 and report.dropped == [report.dropped[0]]
    name = "sem_seg_head.pixel_decoder.transformer.encoder.layers.5.self_attn.sampling_offsets.weight"
    torch.testing.assert_close(paper_model.pixel_decoder.encoder_layers[5].self_attn.sampling_offsets.weight,
                               torch.from_numpy(model[name]).float())


def test_torchvision_files_load_into_backbone_and_value_encoder(paper_model, tmp_path):
    for arch, module in (("resnet50", paper_model.backbone), ("resnet18", paper_model.value_encoder.mask_backbone)):
        g = torch.Generator().manual_seed(1)
        state = {k: (torch.randn(s, generator=g).half() if s else torch.tensor(10))
                 for k, s in key_list(f"torchvision_{arch}_keys.txt").items()}
        path = tmp_path / f"{arch}-test.pth"
        torch.save(state, path)
        report = load_torchvision_resnet(module, path, verbose=False)
        assert (report.missing, report.unexpected, report.skipped_shape) == ([], [], []), arch
        assert all(d.startswith(("fc.", "layer4.")) or "num_batches_tracked" in d for d in report.dropped), arch
        torch.testing.assert_close(module.conv1.weight[:, :3], state["conv1.weight"].float())
    assert paper_model.value_encoder.mask_backbone.conv1.weight[:, 3:].abs().max() == 0   # mask channels start at 0


# --- the train options ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    from training_helpers import make_tiny_world
    return make_tiny_world(tmp_path_factory.mktemp("world") / "toy")


def _trainer(world, out, **kwargs):
    from training_helpers import tiny_train_config

    from isvos_lite.train.batches import DataSources
    from isvos_lite.train.trainer import Trainer
    return Trainer(tiny_train_config(iterations=1), get_preset("tiny", backbone_norm="frozen_bn"),
                   DataSources.discover(world), out, plan=("main",), progress=False, **kwargs)


def _torchvision_like(module, path, seed):
    """A torchvision-layout file for a tiny-width ResNet: the module's own key names (which ARE torchvision's,
    checked above at full size) with random values, fc added."""
    g = torch.Generator().manual_seed(seed)
    state = {k: torch.rand(v.shape, generator=g) + 0.5 for k, v in module.state_dict().items()}
    state["fc.weight"] = torch.randn(1000, 8)
    torch.save(state, path)
    return state


def test_frozen_bn_with_random_weights_is_refused(tiny_world, tmp_path):
    with pytest.raises(ValueError, match="frozen BatchNorm.*--init-mask2former.*--init-imagenet-value.*--backbone-norm bn"):
        _trainer(tiny_world, tmp_path / "a")
    model = ISVOS(get_preset("tiny", backbone_norm="frozen_bn"))
    _torchvision_like(model.backbone, tmp_path / "r.pth", 0)
    with pytest.raises(ValueError, match="value encoder"):                   # the backbone alone is not enough
        _trainer(tiny_world, tmp_path / "b", init_imagenet=tmp_path / "r.pth")


def test_train_options_import_the_files(tiny_world, tmp_path, capsys):
    model = ISVOS(get_preset("tiny", backbone_norm="frozen_bn"))
    backbone = _torchvision_like(model.backbone, tmp_path / "r.pth", 0)
    value = _torchvision_like(model.value_encoder.mask_backbone, tmp_path / "v.pth", 1)
    trainer = _trainer(tiny_world, tmp_path / "run", init_imagenet=tmp_path / "r.pth",
                       init_imagenet_value=tmp_path / "v.pth")
    out = capsys.readouterr().out
    assert "--init-imagenet " in out and "--init-imagenet-value " in out and "matched" in out
    torch.testing.assert_close(trainer.model.backbone.layer2[0].bn1.running_var, backbone["layer2.0.bn1.running_var"])
    torch.testing.assert_close(trainer.model.value_encoder.mask_backbone.layer1[1].conv2.weight,
                               value["layer1.1.conv2.weight"])
    with pytest.raises(FileNotFoundError, match="--init-mask2former .*missing.pkl"):
        _trainer(tiny_world, tmp_path / "run2", init_imagenet_value=tmp_path / "v.pth",
                 init_mask2former=tmp_path / "missing.pkl")


def test_cli_backbone_norm_option(tiny_world):
    import argparse

    from isvos_lite.commands.train import add_arguments, build_configs
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--preset", "paper", "--data", str(tiny_world), "--out", "x", "--backbone-norm", "bn",
                              "--init-mask2former", "m.pkl"])
    _, model_cfg, _ = build_configs(args)
    assert model_cfg.backbone_norm == "bn" and args.init_mask2former == "m.pkl"
