"""The memory of the inference protocol (§4.1 "Inference"): a FIFO of at most ``max_memory_frames`` (16) memory
frames, each holding the frame's key (C_k, h, w) and one value (C_v, h, w) per object known when it was written.

The first frame, and every frame where new objects were given, is *pinned*: never evicted, so every object keeps
the frame it was given in (XMem keeps its first frame the same way, https://github.com/hkchengrex/XMem). Objects given
mid-video form a *group* that reads only the memory frames written since it appeared
(:meth:`MemoryBank.first_slot_with`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["MemorySlot", "MemoryBank"]


@dataclass
class MemorySlot:
    """One memory frame: its key, the value of every object known when it was written, and whether it is pinned."""

    frame_index: int
    key: torch.Tensor          # (C_k, h, w)
    value: torch.Tensor        # (O_at_write, C_v, h, w)
    pinned: bool


class MemoryBank:
    """FIFO memory of at most ``max_frames`` slots; pinned slots (first frame, new objects) are never evicted."""

    def __init__(self, max_frames: int):
        self.max_frames = max_frames
        self.slots: list[MemorySlot] = []

    def add(self, slot: MemorySlot) -> None:
        self.slots.append(slot)
        while len(self.slots) > self.max_frames:
            evictable = [i for i, s in enumerate(self.slots) if not s.pinned]
            if not evictable:
                break                   # more pinned frames than the budget: keep them all
            del self.slots[evictable[0]]

    def first_slot_with(self, num_objects: int) -> int:
        """Index of the first slot whose value holds at least ``num_objects`` objects."""
        for i, s in enumerate(self.slots):
            if s.value.shape[0] >= num_objects:
                return i
        raise RuntimeError("internal error: no memory frame holds this object group")
