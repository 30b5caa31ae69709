"""Video inference with the paper's protocol (§4.1 "Inference"), frame by frame: ``VideoSegmenter(model).step(frame,
mask=None)``.

The package, one part of the protocol per module (as XMem's ``inference/``, https://github.com/hkchengrex/XMem):

* :mod:`~isvos_lite.inference.segmenter` — :class:`VideoSegmenter` (memory every 5th frame, top-k 20 reading, objects
  added mid-video, any frame size), :func:`segment_video`, the input checks and the recorded internals;
* :mod:`~isvos_lite.inference.memory_bank` — the FIFO memory of 16 frames with pinned frames;
* :mod:`~isvos_lite.inference.views` — test-time augmentation (Table 5): flipped and rescaled views;
* :mod:`~isvos_lite.inference.precision` — bf16 autocast on CPUs with native bf16, fp32 elsewhere.

Every name is importable from ``isvos_lite.inference`` directly.
"""

from isvos_lite.inference.memory_bank import MemoryBank, MemorySlot
from isvos_lite.inference.precision import amp_dtype, default_amp, native_bf16_cpu, precision_name, precision_note
from isvos_lite.inference.segmenter import StepInternals, VideoSegmenter, frame_to_tensor, mask_to_numpy, segment_video
from isvos_lite.inference.views import View, encode_view, from_view, to_view

__all__ = ["VideoSegmenter", "StepInternals", "segment_video", "frame_to_tensor", "mask_to_numpy", "MemoryBank",
           "MemorySlot", "View", "encode_view", "to_view", "from_view", "native_bf16_cpu", "default_amp", "amp_dtype",
           "precision_name", "precision_note"]
