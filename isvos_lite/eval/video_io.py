"""The old import path of :mod:`isvos_lite.viz.video_io` (overlay videos are visualisation, so the module lives in
``viz``). Existing ``from isvos_lite.eval.video_io import ...`` lines keep working; new code imports from ``viz``."""

import importlib

_video_io = importlib.import_module("isvos_lite.viz.video_io")   # resolved at run time: eval does not depend on viz
__all__ = list(_video_io.__all__)
globals().update({name: getattr(_video_io, name) for name in __all__})
