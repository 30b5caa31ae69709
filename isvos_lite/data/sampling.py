"""Clip sampling for main training: the max-skip curriculum and frame-index sampling (peers.md §2).

During main training every sample is a short clip (T = 3 frames by default) of one video. The
frames of a clip are at most ``max_skip`` frames apart, and ``max_skip`` follows a curriculum:
small gaps first (easy), larger gaps in the middle (long-range matching), small again at the end.
The default schedule is Cutie's: 5, 10, 15, 5 at training fractions 0, 0.1, 0.3, 0.8.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DEFAULT_SKIP_SCHEDULE", "max_skip_at", "sample_clip_indices"]

DEFAULT_SKIP_SCHEDULE: tuple[tuple[float, int], ...] = ((0.0, 5), (0.1, 10), (0.3, 15), (0.8, 5))


def max_skip_at(progress: float, schedule=DEFAULT_SKIP_SCHEDULE) -> int:
    """max_skip at ``progress`` in [0, 1] of training: the value of the last schedule step reached.

    >>> [max_skip_at(p) for p in (0.0, 0.05, 0.1, 0.5, 0.9, 1.0)]
    [5, 5, 10, 15, 5, 5]
    """
    if not schedule:
        raise ValueError("max-skip schedule is empty; give [(fraction, max_skip), ...]")
    steps = sorted((float(f), int(s)) for f, s in schedule)
    if any(s < 1 for _, s in steps):
        raise ValueError(f"max_skip values must be >= 1, got {steps}")
    value = steps[0][1]
    for fraction, skip in steps:
        if progress >= fraction:
            value = skip
    return value


def sample_clip_indices(rng: np.random.Generator, length: int, num_frames: int, max_skip: int,
                        reverse_probability: float = 0.5) -> list[int]:
    """``num_frames`` distinct frame indices of a video of ``length`` frames, in clip order.

    XMem's rule: start anywhere; each next frame is drawn among the frames within ``max_skip``
    of one already chosen; then sort. With probability ``reverse_probability`` the clip runs
    backwards in time (time reversal doubles the motions seen).
    """
    if length < num_frames:
        raise ValueError(f"a clip of {num_frames} frames needs a video of at least {num_frames} frames, got {length}")
    max_skip = max(1, int(max_skip))
    chosen = {int(rng.integers(length))}
    while len(chosen) < num_frames:
        candidates = set()
        for index in chosen:
            candidates.update(range(max(0, index - max_skip), min(length, index + max_skip + 1)))
        candidates -= chosen
        chosen.add(int(rng.choice(sorted(candidates))))
    clip = sorted(chosen)
    if rng.random() < reverse_probability:
        clip.reverse()
    return clip
