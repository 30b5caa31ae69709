"""isvos-lite: a readable PyTorch implementation of ISVOS (Wang et al., CVPR 2023) and a course around it."""

__version__ = "0.1.0"

from isvos_lite.config import ModelConfig, PRESETS, get_preset  # noqa: E402,F401
