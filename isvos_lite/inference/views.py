"""Test-time augmentation (Table 5, "image scaling and vertical mirroring", following XMem): the views of a frame.

A view is one (scale, flip) of the video with its own memory (:class:`View`). "Vertical mirroring" in the paper is a
mirror image about the vertical axis, i.e. a left-right (horizontal) flip, as XMem's ``--flip``
(``torch.flip(dims=[-1])``, https://github.com/hkchengrex/XMem). :func:`encode_view` resizes, flips, normalises and
pads a frame for one view and runs the per-frame encoders; :func:`to_view` and :func:`from_view` carry masks and
probabilities between the original frame and the view's padded frame. How the views' predictions are merged
(``tta="independent"`` or ``"online"``) is the segmenter's choice (:class:`isvos_lite.inference.VideoSegmenter`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from isvos_lite.inference.memory_bank import MemoryBank

__all__ = ["View", "encode_view", "to_view", "from_view"]


class View:
    """One test-time view (scale, flip) with its own memory."""

    def __init__(self, scale: float, flip: bool, max_frames: int):
        self.scale, self.flip = scale, flip
        self.memory = MemoryBank(max_frames)


def encode_view(model, view: View, image: torch.Tensor, scale: float, device: torch.device,
                with_instance: bool = False) -> dict:
    """Resize (``scale`` x the view's scale), flip, normalise and pad one (3, H, W) frame to a multiple of 32
    (centred; zero is the mean colour after normalisation), then run the per-frame encoders.

    Returns ``{"feats": FrameFeatures, "pad": (left, right, top, bottom), "inner": (h, w), "scale": s}``."""
    s = scale * view.scale
    x = image.unsqueeze(0).to(device)                                # (1, 3, H, W)
    H, W = x.shape[-2:]
    if s != 1.0:
        x = F.interpolate(x, size=(max(1, round(H * s)), max(1, round(W * s))), mode="bilinear",
                          align_corners=False, antialias=s < 1)
    if view.flip:
        x = x.flip(-1)
    x = model.normalize(x)
    h, w = x.shape[-2:]
    ph, pw = (32 - h % 32) % 32, (32 - w % 32) % 32
    pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)             # (left, right, top, bottom), centred
    x = F.pad(x, pad)                                                # zero = mean colour after normalisation
    feats = model.encode_frame(x, normalized=True, with_instance=with_instance)
    return {"feats": feats, "pad": pad, "inner": (h, w), "scale": s}


def to_view(view: View, enc: dict, masks: torch.Tensor, device: torch.device) -> torch.Tensor:
    """(O, H, W) masks at the original size -> (1, O, Hp, Wp) in the view's padded frame."""
    h, w = enc["inner"]
    m = masks.unsqueeze(0).to(device)
    if m.shape[-2:] != (h, w):
        m = F.interpolate(m, size=(h, w), mode="bilinear", align_corners=False)
    if view.flip:
        m = m.flip(-1)
    return F.pad(m, enc["pad"])


def from_view(view: View, enc: dict, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """(1, C, Hp, Wp) in the view's padded frame -> (C, H, W) at the original size (unpad, unflip, resize), on CPU."""
    left, right, top, bottom = enc["pad"]
    h, w = enc["inner"]
    x = x[..., top: top + h, left: left + w]
    if view.flip:
        x = x.flip(-1)
    if (h, w) != (H, W):
        x = F.interpolate(x.float(), size=(H, W), mode="bilinear", align_corners=False)
    return x[0].float().cpu()
