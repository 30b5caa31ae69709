"""Input conversion for every plotting function: numpy arrays or torch tensors in, checked numpy out.

The visualisation functions never take model objects, only arrays, so they work for any model
(ours, a rebuilt-from-scratch notebook module, or STCN/XMem outputs read from disk). These helpers
turn tensors into numpy, put channels last and check shapes, with error messages that name the
argument and say what to pass instead.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

__all__ = ["to_numpy", "as_frame", "as_frames", "as_mask", "as_masks", "check_same_hw"]

MAX_OBJECT_ID = 255  # the DAVIS palette has 256 entries; 255 is the "void" label of DAVIS annotations


def to_numpy(x: Any, name: str = "array") -> np.ndarray:
    """Return ``x`` as a numpy array: tensors are detached and moved to the CPU, lists are stacked."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return x
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name}: expected a numpy array or torch tensor, got {type(x).__name__} ({error})") from None


def as_frame(frame: Any, name: str = "frame") -> np.ndarray:
    """An RGB frame as (H, W, 3) uint8.

    Accepts (H, W, 3) or channel-first (3, H, W) (the model's layout), uint8 in 0..255 or float in
    [0, 1] (the model normalisation contract), and (H, W) grey levels.
    """
    image = to_numpy(frame, name)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)  # grey (H, W) -> (H, W, 3)
    if image.ndim != 3:
        raise ValueError(f"{name}: expected an RGB frame of shape (H, W, 3) or (3, H, W), got shape {image.shape}")
    if image.shape[2] != 3 and image.shape[0] == 3:
        image = np.transpose(image, (1, 2, 0))  # (3, H, W) -> (H, W, 3)
    if image.shape[2] != 3:
        raise ValueError(f"{name}: expected 3 colour channels (H, W, 3) or (3, H, W), got shape {image.shape}")
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.bool_ or not np.issubdtype(image.dtype, np.number):
        raise ValueError(f"{name}: expected uint8 or float pixels, got dtype {image.dtype}")
    integer_pixels = np.issubdtype(image.dtype, np.integer)
    image = image.astype(np.float64)
    if not np.all(np.isfinite(image)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    low, high = float(image.min()), float(image.max())
    if integer_pixels:
        if low < 0 or high > 255:
            raise ValueError(f"{name}: integer pixels must lie in 0..255, got range [{low:g}, {high:g}]")
        return image.astype(np.uint8)
    if low < -1e-3 or high > 1 + 1e-3:
        raise ValueError(
            f"{name}: float pixels must lie in [0, 1], got range [{low:.3g}, {high:.3g}]; "
            "pass uint8 0..255, or un-normalise (multiply by the ImageNet std and add the mean) first")
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def as_frames(frames: Any, name: str = "frames") -> list[np.ndarray]:
    """A video as a list of (H, W, 3) uint8 frames; accepts a list, (T, H, W, 3) or (T, 3, H, W)."""
    if isinstance(frames, (list, tuple)):
        items = list(frames)
    else:
        array = to_numpy(frames, name)
        if array.ndim != 4:
            raise ValueError(f"{name}: expected a list of frames or an array of shape (T, H, W, 3), got shape {array.shape}")
        items = list(array)
    if not items:
        raise ValueError(f"{name}: is empty; pass at least one frame")
    return [as_frame(item, f"{name}[{index}]") for index, item in enumerate(items)]


def as_mask(mask: Any, name: str = "mask", shape: tuple[int, int] | None = None) -> np.ndarray:
    """An object-id mask as (H, W) int64 with ids in 0..255 (0 = background).

    ``shape`` is the (H, W) it must have (usually the frame's); a mismatch is a clear error rather
    than a silently misplaced overlay. Soft masks (probabilities) are refused: take the argmax first.
    """
    ids = to_numpy(mask, name)
    if ids.ndim == 3 and ids.shape[0] == 1:
        ids = ids[0]  # (1, H, W) -> (H, W)
    if ids.ndim != 2:
        raise ValueError(f"{name}: expected an object-id mask of shape (H, W), got shape {ids.shape}")
    if ids.dtype == np.bool_:
        ids = ids.astype(np.int64)
    elif np.issubdtype(ids.dtype, np.floating):
        if not np.all(np.isfinite(ids)) or not np.all(ids == np.round(ids)):
            raise ValueError(
                f"{name}: holds non-integer values; pass integer object ids "
                "(for soft masks of shape (1+O, H, W) use probs.argmax(0))")
    elif not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{name}: expected integer object ids, got dtype {ids.dtype}")
    ids = ids.astype(np.int64)
    if ids.size and (ids.min() < 0 or ids.max() > MAX_OBJECT_ID):
        raise ValueError(f"{name}: object ids must lie in 0..{MAX_OBJECT_ID}, got range [{ids.min()}, {ids.max()}]")
    if shape is not None and tuple(ids.shape) != tuple(shape):
        raise ValueError(
            f"{name}: shape {tuple(ids.shape)} does not match the frame's (H, W) = {tuple(shape)}; "
            "resize the mask with nearest-neighbour interpolation (or pass the matching frame)")
    return ids


def as_masks(masks: Any, name: str, shapes: Sequence[tuple[int, int]]) -> list[np.ndarray | None]:
    """One mask per frame (entries may be None for unannotated frames), each checked against its frame."""
    if isinstance(masks, (list, tuple)):
        items = list(masks)
    else:
        array = to_numpy(masks, name)
        if array.ndim != 3:
            raise ValueError(f"{name}: expected a list of (H, W) masks or an array of shape (T, H, W), got shape {array.shape}")
        items = list(array)
    if len(items) != len(shapes):
        raise ValueError(f"{name}: has {len(items)} masks but there are {len(shapes)} frames; pass one mask per frame (None where unannotated)")
    return [None if item is None else as_mask(item, f"{name}[{index}]", shape)
            for index, (item, shape) in enumerate(zip(items, shapes))]


def check_same_hw(frames: Sequence[np.ndarray], name: str) -> tuple[int, int]:
    """Return the common (H, W) of a list of frames, or raise if the sizes differ."""
    height, width = frames[0].shape[:2]
    for index, frame in enumerate(frames):
        if frame.shape[:2] != (height, width):
            raise ValueError(f"{name}[{index}]: size {frame.shape[:2]} differs from {name}[0]'s {(height, width)}; all frames of a video must share one size")
    return height, width
