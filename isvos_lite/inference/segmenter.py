"""Video inference with the paper's protocol (§4.1 "Inference"), frame by frame.

``VideoSegmenter(model).step(frame, mask=None)`` is the whole API:

* the first frame's mask goes into memory and is returned as given (nothing is predicted for it);
* every ``mem_every``-th frame (5) is written to memory, its value encoded from the *predicted soft* masks;
* the memory is a FIFO of at most ``max_memory_frames`` (16) frames; the first frame, and every frame where new
  objects were given, is pinned (never evicted);
* memory reading keeps the ``top_k`` (20) best matches per query pixel (Eq. (3) with a top-k filter);
* objects may appear mid-video: a mask given at a later frame adds its objects (they read only from memory frames
  written since they appeared, their own "group"), ids need not be contiguous (mapped internally, mapped back);
* any frame size: frames are padded to a multiple of 32 and unpadded; frames larger than ``max_internal_size``
  (short side) are processed at that size and the probabilities resized back bilinearly before the argmax;
* optional test-time augmentation (Table 5, "image scaling and vertical mirroring", following XMem): a horizontal
  flip and several scales. "Vertical mirroring" in the paper is a mirror image about the vertical axis, i.e. a
  left-right (horizontal) flip, as XMem's ``--flip`` (``torch.flip(dims=[-1])``). Each view has its own memory;
  two ways to merge the views (``tta=``):

  - ``"independent"`` (default; XMem's protocol, what Table 5 reproduces): every view is its own pass over the
    video, its memory written from *its own* prediction, and only the output probabilities are averaged (after
    un-flipping and resizing back). Identical to running one pass per view, saving the probabilities and averaging
    them afterwards (XMem's ``--save_scores`` + ``merge_multi_scale.py``), in one loop;
  - ``"online"``: every view's memory is written from the *averaged* prediction (an online ensemble: the views
    correct one another while the video runs). Not what XMem or the paper do; kept as an option.

``segmenter.last`` (with ``record=True``) holds the internals of the last step for the visualisations:
query key, affinity, readout F_mem, P features, instance queries (see ``StepInternals``).
"""

from __future__ import annotations

import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch

from isvos_lite.inference.memory_bank import MemorySlot
from isvos_lite.inference.precision import amp_dtype, default_amp
from isvos_lite.inference.views import View, encode_view, from_view, to_view
from isvos_lite.model.aggregate import aggregate
from isvos_lite.model.memory import (blockwise_topk_read, query_major_similarity, readout, softmax_affinity,
                                     topk_readout)

__all__ = ["VideoSegmenter", "StepInternals", "segment_video", "frame_to_tensor", "mask_to_numpy"]


# ---------------------------------------------------------------------------------------------- input checks
def frame_to_tensor(frame, name: str = "frame") -> torch.Tensor:
    """Any common frame -> float (3, H, W) in [0, 1].

    Accepts numpy / torch, (H, W) grayscale, (H, W, 3) RGB, (H, W, 4) RGBA (alpha dropped), (3, H, W) tensors,
    uint8 (0..255) or float (0..1).
    """
    is_numpy = isinstance(frame, np.ndarray)
    t = torch.from_numpy(np.array(frame)) if is_numpy else torch.as_tensor(frame)   # a copy: read-only arrays are fine
    if t.dim() == 2:                                                   # grayscale (H, W)
        t = t.unsqueeze(0).expand(3, *t.shape)
    elif t.dim() == 3 and t.shape[-1] in (1, 3, 4) and (is_numpy or t.shape[0] not in (1, 3)):
        t = t.permute(2, 0, 1)                                           # (H, W, C) -> (C, H, W)
    if t.dim() != 3 or t.shape[0] not in (1, 3, 4):
        raise ValueError(f"{name} must be (H, W), (H, W, 3), (H, W, 4) or (3, H, W); got shape {tuple(t.shape)}")
    t = t[:3] if t.shape[0] >= 3 else t.expand(3, *t.shape[1:])        # drop alpha / expand gray
    if t.dtype == torch.uint8:
        return t.float() / 255.0
    if t.is_floating_point():
        if t.numel() and (t.min() < -1e-3 or t.max() > 1 + 1e-3):
            raise ValueError(f"{name} is float with values outside [0, 1] (min {t.min():.3g}, max {t.max():.3g}); "
                             f"pass uint8 0..255 or float 0..1")
        return t.float()
    raise ValueError(f"{name} has dtype {t.dtype}; pass uint8 0..255 or float 0..1")


def mask_to_numpy(mask, name: str = "mask") -> np.ndarray:
    """An id mask (H, W) of integers -> int64 numpy, with a clear error for RGB or soft masks."""
    m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if m.ndim == 3:
        raise ValueError(f"{name} has shape {m.shape}: an RGB mask. Masks must be (H, W) object ids (0 = background), "
                         f"e.g. a palette PNG read with isvos_lite.data.palette.read_mask; see data/README.md")
    if m.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (H, W) id mask, got shape {m.shape}")
    if m.dtype.kind == "f":
        if not np.all(np.equal(np.mod(m, 1), 0)):
            raise ValueError(f"{name} holds fractional values: pass integer object ids (0 = background), not "
                             f"probabilities or an anti-aliased mask")
    elif m.dtype.kind not in "iub":
        raise ValueError(f"{name} has dtype {m.dtype}; pass integer object ids")
    m = m.astype(np.int64)
    if m.min() < 0:
        raise ValueError(f"{name} has negative ids; ids are 0 (background) .. 255")
    return m


# ---------------------------------------------------------------------------------------------- internals
@dataclass
class StepInternals:
    """What happened inside the last ``step`` (recorded when ``record=True``), for visualisation.

    Coordinates: features live on the padded internal image at stride 16; ``image_to_cell`` maps a pixel of the
    original frame to the flat index of its stride-16 cell.
    """

    frame_index: int
    is_memory_frame: bool
    memory_frame_indices: list[int]              # video frame index of each memory slot, in slot order
    query_key: torch.Tensor | None = None        # (C_k, h, w)
    similarity: torch.Tensor | None = None       # (T*h*w, h*w) raw L2 similarity (before softmax)
    affinity: torch.Tensor | None = None         # (T*h*w, h*w) top-k softmax of the first object group
    readout: torch.Tensor | None = None          # (O, C_v, h, w) F_mem per object
    object_logits: torch.Tensor | None = None    # (O, H, W) at the original size
    pixel_features: list[torch.Tensor] | None = None   # [P_s32, P_s16, P_s8], each (C_d, h, w)
    instance_queries: torch.Tensor | None = None        # (N, C_d) q̃_ins
    instance_masks: torch.Tensor | None = None           # (N, H/4, W/4) instance mask logits
    key_extras: dict = field(default_factory=dict)       # Q_g, q_vos, instance_maps, reference_points
    scale: float = 1.0                           # internal size / original size
    pad: tuple[int, int, int, int] = (0, 0, 0, 0)  # (left, right, top, bottom) padding of the internal image
    feature_size: tuple[int, int] = (0, 0)       # (h, w) of the stride-16 grid
    memory_frames_shape: tuple[int, int] = (0, 0)

    def image_to_cell(self, x: float, y: float) -> int:
        """Flat stride-16 cell index (row-major over (h, w)) of pixel (x, y) of the original frame."""
        h, w = self.feature_size
        left, _, top, _ = self.pad
        cx = int((x * self.scale + left) // 16)
        cy = int((y * self.scale + top) // 16)
        return min(max(cy, 0), h - 1) * w + min(max(cx, 0), w - 1)

    def affinity_maps(self, x: float, y: float) -> torch.Tensor:
        """Affinity of pixel (x, y) of the current frame to every memory position: (T, h, w)."""
        if self.affinity is None:
            raise ValueError("no affinity was recorded: the last step was a first frame or record=False")
        h, w = self.feature_size
        col = self.affinity[:, self.image_to_cell(x, y)]
        return col.view(-1, h, w)


# ---------------------------------------------------------------------------------------------- segmenter
class VideoSegmenter:
    """Segment one video, frame by frame, with the paper's inference protocol (see the module docstring).

    Test-time augmentation: ``flip=True`` and/or several ``scales`` make one view each; ``tta="independent"``
    (default, XMem's protocol for Table 5) or ``"online"`` says how they are merged (module docstring)."""

    def __init__(self, model, mem_every: int = 5, max_memory_frames: int = 16, top_k: int | None = 20,
                 device: str | torch.device | None = None, amp: bool | None = None, flip: bool = False,
                 scales: tuple[float, ...] = (1.0,), max_internal_size: int | None = 480, record: bool = False,
                 tta: str = "independent"):
        if mem_every < 1:
            raise ValueError(f"mem_every must be >= 1, got {mem_every}")
        if max_memory_frames < 1:
            raise ValueError(f"max_memory_frames must be >= 1, got {max_memory_frames}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None (full softmax), got {top_k}")
        if not scales or any(s <= 0 for s in scales):
            raise ValueError(f"scales must be positive, got {scales}")
        if tta not in ("independent", "online"):
            raise ValueError(f"tta must be 'independent' (XMem's protocol: one pass per view, probabilities averaged) "
                             f"or 'online' (memory written from the averaged prediction), got {tta!r}")
        self.tta = tta
        self.model = model.eval()
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model.to(self.device)
        self.mem_every, self.max_memory_frames, self.top_k = mem_every, max_memory_frames, top_k
        self.amp = default_amp(self.device) if amp is None else bool(amp)
        self.record = record
        self.max_internal_size = max_internal_size
        self.views = [(s, f) for s in scales for f in ((False, True) if flip else (False,))]
        self.reset()

    # -- state
    def reset(self) -> None:
        """Forget the video: memory, objects and frame counter."""
        self.streams = [View(s, f, self.max_memory_frames) for s, f in self.views]
        self.object_ids: list[int] = []      # user ids, in internal channel order
        self.frame_index = -1
        self.last_memory_frame = -10**9
        self.last: StepInternals | None = None
        self._size: tuple[int, int] | None = None
        self._warned_size = False

    @property
    def num_objects(self) -> int:
        return len(self.object_ids)

    # -- the one public step
    @torch.inference_mode()
    def step(self, frame, mask=None, objects: list[int] | None = None) -> torch.Tensor:
        """Process the next frame. Returns probabilities (1 + O, H, W) on the CPU: background, then one channel per
        object in the order of ``self.object_ids``. ``mask`` (H, W) ids adds or re-sets the objects it holds (or
        only ``objects`` among them)."""
        image = frame_to_tensor(frame)                                   # (3, H, W)
        H, W = image.shape[-2:]
        if self._size is None:
            self._size = (H, W)
        elif self._size != (H, W):
            raise ValueError(f"frame {self.frame_index + 1} is {H}x{W} but the video's frames are "
                             f"{self._size[0]}x{self._size[1]}; resize all frames to one size")
        self.frame_index += 1
        given = self._parse_mask(mask, objects, H, W) if mask is not None else {}
        if self.frame_index == 0 and not given:
            raise ValueError("the first frame needs a mask with at least one object (ids > 0); got none")
        for oid in given:
            if oid not in self.object_ids:
                self.object_ids.append(oid)

        scale = self._internal_scale(H, W)
        amp_ctx = torch.autocast(self.device.type, dtype=amp_dtype(self.device)) if self.amp else nullcontext()
        with amp_ctx:
            encoded = [encode_view(self.model, stream, image, scale, self.device,
                                   with_instance=self.record and stream is self.streams[0])
                       for stream in self.streams]
            # one (1 + known, H, W) prediction per view at the original size (un-flipped, resized back), or None
            # while nothing is in memory yet
            view_probs = [self._predict(stream, enc, self._objects_in_memory(stream), H, W)
                          if self._objects_in_memory(stream) > 0 else None
                          for stream, enc in zip(self.streams, encoded)]
        if self.tta == "online" or len(self.streams) == 1:
            predicted = [p for p in view_probs if p is not None]
            probs = self._complete(torch.stack(predicted).mean(0) if predicted else None, given, H, W)
            stream_probs = [probs] * len(self.streams)                   # every memory from the averaged prediction
        else:
            stream_probs = [self._complete(p, given, H, W) for p in view_probs]   # each view on its own
            probs = torch.stack(stream_probs).mean(0)                    # (1 + O, H, W) averaged afterwards

        is_memory = bool(given) or (self.frame_index - self.last_memory_frame >= self.mem_every)
        if is_memory:
            with amp_ctx:
                for stream, enc, own in zip(self.streams, encoded, stream_probs):
                    self._memorize(stream, enc, own[1:], pinned=bool(set(given) - self._ids_in_memory(stream)))
            self.last_memory_frame = self.frame_index
        if self.record and self.last is not None:
            self.last.is_memory_frame = is_memory
        return probs

    def probs_to_mask(self, probs: torch.Tensor) -> np.ndarray:
        """(1 + O, H, W) probabilities -> (H, W) uint8 mask with the user's original object ids."""
        lut = torch.tensor([0] + self.object_ids, dtype=torch.uint8)
        return lut[probs.argmax(0)].numpy()

    # -- helpers
    def _complete(self, predicted: torch.Tensor | None, given: dict[int, torch.Tensor], H: int, W: int) -> torch.Tensor:
        """(1 + known, H, W) prediction (or None: nothing predicted yet) -> (1 + O, H, W) with the given masks in."""
        probs = torch.zeros(1 + self.num_objects, H, W)
        if predicted is not None:
            probs[: predicted.shape[0]] = predicted
        else:
            probs[0] = 1.0
        return self._insert_given(probs, given) if given else probs

    def _parse_mask(self, mask, objects, H, W) -> dict[int, torch.Tensor]:
        m = mask_to_numpy(mask, name=f"mask of frame {self.frame_index}")
        if m.shape != (H, W):
            raise ValueError(f"mask of frame {self.frame_index} is {m.shape[0]}x{m.shape[1]} but the frame is {H}x{W}; "
                             f"masks must have the frame's size")
        present = [int(v) for v in np.unique(m) if v != 0]
        if m.max() > 255:
            raise ValueError(f"mask of frame {self.frame_index} has id {m.max()}; ids must be 1..255")
        if objects is None:
            objects = present
        missing = [o for o in objects if o not in present]
        if missing:
            raise ValueError(f"objects {missing} are not in the mask of frame {self.frame_index} "
                             f"(it holds ids {present}); pass only ids present in the mask")
        if self.frame_index == 0 and len(present) > 0 and len(objects) > 0 and len(present) > 100:
            raise ValueError(f"the first mask has {len(present)} distinct ids: is it an RGB or anti-aliased mask? "
                             f"Convert it to a palette PNG with one id per object (see data/README.md)")
        mt = torch.from_numpy(m)
        return {int(o): (mt == o).float() for o in objects}

    def _internal_scale(self, H: int, W: int) -> float:
        if self.max_internal_size is None or min(H, W) <= self.max_internal_size:
            return 1.0
        if not self._warned_size:
            warnings.warn(f"frames are {H}x{W}: processing at short side {self.max_internal_size} "
                          f"(max_internal_size) and resizing the masks back", stacklevel=3)
            self._warned_size = True
        return self.max_internal_size / min(H, W)

    def _objects_in_memory(self, stream: View) -> int:
        return max((s.value.shape[0] for s in stream.memory.slots), default=0)

    def _ids_in_memory(self, stream: View) -> set[int]:
        return set(self.object_ids[: self._objects_in_memory(stream)])

    def _predict(self, stream: View, enc: dict, known: int, H: int, W: int) -> torch.Tensor:
        """Read memory (per object group) and decode: (1 + known, H, W) probabilities."""
        feats = enc["feats"]
        slots = stream.memory.slots
        _, Ck, h, w = feats.key.shape
        mem_key = torch.stack([s.key for s in slots], 1).view(1, Ck, -1)          # (1, C_k, T*h*w)
        query_key = feats.key.view(1, Ck, -1)                                      # (1, C_k, h*w)
        # the whole similarity where it is needed (the full softmax, the recorded internals for the viz) or cheap (a
        # GPU prefers one large top-k); top-k inference on a CPU reads memory a block of query pixels at a time, so the
        # block stays in the cache (memory.blockwise_topk_read, same numbers)
        dense = self.top_k is None or self.record or mem_key.device.type != "cpu"
        similarity = query_major_similarity(mem_key, query_key) if dense else None  # (1, h*w, T*h*w), once per frame
        readouts, first_affinity = [], None
        start_obj = 0
        while start_obj < known:                                                    # object groups
            first_slot = stream.memory.first_slot_with(start_obj + 1)               # where this group appeared
            group_end = slots[first_slot].value.shape[0]                            # objects known from then on
            values = torch.stack([s.value[start_obj:group_end] for s in slots[first_slot:]], 2)  # (O_g, C_v, Tg, h, w)
            Og, Cv = values.shape[:2]
            values = values.reshape(1, Og, Cv, -1)                                  # (1, O_g, C_v, Tg*h*w)
            affinity = None
            if not dense:
                group_readout = blockwise_topk_read(mem_key[:, :, first_slot * h * w:], query_key, values, self.top_k)
            elif self.top_k is None:                                                # full softmax (as in training)
                affinity = softmax_affinity(similarity[:, :, first_slot * h * w:].transpose(1, 2))  # (1, Tg*h*w, h*w)
                group_readout = readout(affinity.to(values.dtype), values)
            else:
                sim = similarity[:, :, first_slot * h * w:]                         # (1, h*w, Tg*h*w)
                group_readout, weights, indices = topk_readout(sim, values, self.top_k)
                if self.record and first_affinity is None:                          # dense copy only for the viz
                    affinity = torch.zeros_like(sim[0]).scatter_(1, indices[0], weights[0]).T.unsqueeze(0)
            readouts.append(group_readout.view(Og, Cv, h, w))
            if first_affinity is None:
                first_affinity = affinity
            start_obj = group_end
        f_mem = torch.cat(readouts, 0).unsqueeze(0)                                 # (1, O, C_v, h, w)
        logits = self.model.segment(feats, f_mem)                                 # (1, O, Hp, Wp)
        _, probs = aggregate(torch.sigmoid(logits.float()))                         # (1, 1 + O, Hp, Wp)
        probs = from_view(stream, enc, probs, H, W)                                  # (1 + O, H, W)
        if self.record and stream is self.streams[0]:
            self.last = StepInternals(
                frame_index=self.frame_index, is_memory_frame=False,
                memory_frame_indices=[s.frame_index for s in slots],
                query_key=feats.key[0].float().cpu(), similarity=similarity[0].T.float().cpu(),
                affinity=None if first_affinity is None else first_affinity[0].float().cpu(),
                readout=f_mem[0].float().cpu(),
                object_logits=from_view(stream, enc, logits, H, W),
                pixel_features=[p[0].float().cpu() for p in feats.pixel_features] if feats.pixel_features else None,
                instance_queries=feats.instance["queries"][0].float().cpu() if feats.instance else None,
                instance_masks=feats.instance["pred_masks"][0].float().cpu() if feats.instance else None,
                key_extras={k: (v[0].float().cpu() if isinstance(v, torch.Tensor) else v)
                            for k, v in feats.key_extras.items()},
                scale=enc["scale"], pad=enc["pad"], feature_size=(h, w),
            )
        return probs

    def _insert_given(self, probs: torch.Tensor, given: dict[int, torch.Tensor]) -> torch.Tensor:
        """Put the given masks in; other objects lose the given pixels; re-aggregate (as XMem's inference core)."""
        obj = probs[1:].clone()                                                     # (O, H, W)
        covered = torch.zeros_like(probs[0])
        for oid, m in given.items():
            covered = torch.maximum(covered, m)
        obj = obj * (1 - covered)
        for oid, m in given.items():
            obj[self.object_ids.index(oid)] = m
        if len(given) == self.num_objects:             # everything given: return it exactly as given
            return torch.cat([(1 - obj.sum(0, keepdim=True)).clamp(0, 1), obj], 0)
        _, agg = aggregate(obj.unsqueeze(0))
        return agg[0]

    def _memorize(self, stream: View, enc: dict, obj_probs: torch.Tensor, pinned: bool) -> None:
        feats = enc["feats"]
        masks = to_view(stream, enc, obj_probs, self.device)                              # (1, O, Hp, Wp)
        value = self.model.encode_value(feats, masks)                               # (1, O, C_v, h, w)
        stream.memory.add(MemorySlot(self.frame_index, feats.key[0], value[0], pinned or not stream.memory.slots))


def segment_video(model, frames, first_mask, masks_at: dict[int, object] | None = None, progress: bool = True,
                  **segmenter_kwargs) -> list[np.ndarray]:
    """Segment a whole video: ``frames`` is a sequence of frames, ``first_mask`` the (H, W) id mask of frame 0,
    ``masks_at`` optional {frame index: id mask} for objects appearing later. Returns one uint8 id mask per frame."""
    from tqdm.auto import tqdm

    seg = VideoSegmenter(model, **segmenter_kwargs)
    masks_at = dict(masks_at or {})
    masks_at[0] = first_mask
    out = []
    for t, frame in enumerate(tqdm(frames, desc="segmenting", unit="frame", disable=not progress)):
        probs = seg.step(frame, masks_at.get(t))
        out.append(seg.probs_to_mask(probs))
    return out
