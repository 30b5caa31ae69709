"""The one colour grammar of the course: object id -> DAVIS palette colour, everywhere.

Object ``k`` has the colour of row ``k`` of the DAVIS palette in every overlay, curve, legend and
widget, so "the red one" means the same object in notebook 01 and notebook 08 (SAM 2's notebooks
use ``tab10[obj_id]`` the same way). Index 0 is the background (black, never drawn).
Error highlights in :func:`compare_masks` use saturated colours that the first palette entries
do not use, so an error is never confused with an object.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
from matplotlib.patches import Patch

from isvos_lite.data.palette import DAVIS_PALETTE
from isvos_lite.viz.arrays import MAX_OBJECT_ID, as_mask

__all__ = [
    "DAVIS_PALETTE", "object_color", "object_color_hex", "colorize_ids", "object_legend_handles",
    "ERROR_COLORS", "METHOD_COLORS",
]

# colours for the three kinds of mask error (see overlays.error_map); RGB in 0..255
ERROR_COLORS: dict[str, tuple[int, int, int]] = {
    "missed": (255, 255, 0),        # ground-truth object pixel predicted as background
    "spurious": (0, 255, 255),      # background pixel predicted as an object
    "wrong object": (255, 0, 255),  # pixel given to another object
}

# methods (curves of several models) are not objects: they use matplotlib's categorical cycle
METHOD_COLORS: tuple[str, ...] = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple",
                                  "tab:brown", "tab:pink", "tab:gray", "tab:olive", "tab:cyan")


def object_color(object_id: int) -> np.ndarray:
    """The RGB colour of object ``object_id`` as 3 floats in [0, 1] (row ``object_id`` of the palette)."""
    object_id = int(object_id)
    if not 0 <= object_id <= MAX_OBJECT_ID:
        raise ValueError(f"object_id must lie in 0..{MAX_OBJECT_ID}, got {object_id}")
    return DAVIS_PALETTE[object_id].astype(np.float64) / 255.0


def object_color_hex(object_id: int) -> str:
    """The colour of object ``object_id`` as '#rrggbb' (for widget labels)."""
    red, green, blue = (int(round(255 * value)) for value in object_color(object_id))
    return f"#{red:02x}{green:02x}{blue:02x}"


def colorize_ids(mask) -> np.ndarray:
    """(H, W) object ids -> (H, W, 3) uint8, each pixel the palette colour of its id (background black)."""
    return DAVIS_PALETTE[as_mask(mask, "mask")]


def object_legend_handles(object_ids: Iterable[int]) -> list[Patch]:
    """Legend patches "object k" in the palette colour of each id (background skipped)."""
    return [Patch(facecolor=object_color(object_id), edgecolor="white", label=f"object {int(object_id)}")
            for object_id in object_ids if int(object_id) != 0]
