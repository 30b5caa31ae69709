"""Start training from the public pretrained files, as the paper does (§4.1, Table 4), and refuse what cannot work.

``isvos-lite train`` options (all optional, applied in this order, before the first step):

* ``--init-imagenet resnet50-*.pth``       torchvision ImageNet ResNet-50 -> the shared backbone;
* ``--init-imagenet-value resnet18-*.pth`` torchvision ImageNet ResNet-18 -> the value encoder's ResNet (its conv1
  gets the RGB filters, the two mask channels start at zero; layer4 and fc are not used);
* ``--init-mask2former model_final_*.pkl`` detectron2's Mask2Former (R50, COCO instance) -> backbone, pixel decoder
  and transformer decoder (the backbone is then Mask2Former's, which replaces an ImageNet one).

Each import prints matched / missing / unexpected keys (``isvos_lite.weights.LoadReport``).

**Frozen BatchNorm needs pretrained weights.** The ``paper`` preset uses frozen BatchNorm (a fixed per-channel
affine map, as Mask2Former, STCN and XMem do with pretrained weights). At random initialisation that map is the
identity, so nothing normalises the activations (a ResNet-50's res5 grows to a mean |activation| of ~18 against
~0.04 with real BatchNorm). :func:`check_frozen_bn_initialised` therefore refuses to train a frozen-BN ResNet that
no file initialised, and says which file to pass, or to train from scratch with trainable BatchNorm
(``--backbone-norm bn``).
"""

from __future__ import annotations

from pathlib import Path

from isvos_lite.config import ModelConfig
from isvos_lite.weights import LoadReport, load_mask2former_detectron2, load_torchvision_resnet

__all__ = ["import_pretrained", "check_frozen_bn_initialised"]


def import_pretrained(model, imagenet: str | Path | None = None, imagenet_value: str | Path | None = None,
                      mask2former: str | Path | None = None, verbose: bool = True) -> dict[str, LoadReport]:
    """Load the given public files into ``model`` (an ``ISVOS``); returns {option: report}."""
    reports = {}
    if imagenet is not None:
        reports["init_imagenet"] = _load(lambda v: load_torchvision_resnet(model.backbone, imagenet, verbose=v),
                                         "--init-imagenet", imagenet, verbose)
    if imagenet_value is not None:
        reports["init_imagenet_value"] = _load(
            lambda v: load_torchvision_resnet(model.value_encoder.mask_backbone, imagenet_value, verbose=v),
            "--init-imagenet-value", imagenet_value, verbose)
    if mask2former is not None:
        reports["init_mask2former"] = _load(
            lambda v: load_mask2former_detectron2(mask2former, model.backbone, model.pixel_decoder,
                                                  model.transformer_decoder, verbose=v),
            "--init-mask2former", mask2former, verbose)
    return reports


def _load(load, option: str, path, verbose: bool) -> LoadReport:
    try:
        report = load(False)
    except (FileNotFoundError, ValueError) as error:
        raise type(error)(f"{option} {path}: {error}") from error
    if verbose:
        print(f"{option} {path}: {report.summary()}")
    return report


def check_frozen_bn_initialised(model_cfg: ModelConfig, backbone_initialised: bool, value_initialised: bool) -> None:
    """Raise ValueError if a frozen-BatchNorm ResNet (the backbone or the value encoder's) would start random."""
    if model_cfg.backbone_norm != "frozen_bn":
        return
    missing = []
    if not backbone_initialised:
        missing.append("the backbone (--init-mask2former model_final_3c8ec9.pkl, the paper's start, or "
                       "--init-imagenet resnet50-0676ba61.pth)")
    if not value_initialised:
        missing.append("the value encoder's ResNet-18 (--init-imagenet-value resnet18-f37072fd.pth)")
    if missing:
        raise ValueError(
            f"preset {model_cfg.name!r} uses frozen BatchNorm, which is the identity at random initialisation: nothing "
            f"would normalise the activations. Pretrained weights are needed for {' and '.join(missing)}; or start from "
            "a checkpoint (--init CKPT), or train from scratch with trainable BatchNorm (--backbone-norm bn). "
            "data/README.md says where to download the files.")
