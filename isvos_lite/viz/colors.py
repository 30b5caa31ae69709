"""The one colour grammar of the course: object id -> one colour, everywhere.

Object ``k`` has the colour of row ``k`` of the active object palette in every overlay, curve, legend and widget,
so "the blue one" means the same object in notebook 01 and notebook 08 (SAM 2's notebooks use ``tab10[obj_id]``
the same way). Index 0 is the background (never drawn). Two palettes:

- ``"contrast"`` (the default): the colour-blind-safe Okabe-Ito colours (https://jfly.uni-koeln.de/color/), blue
  first, then the DAVIS palette from id 9 on. The teaching world paints its objects and look-alikes in reds,
  oranges, yellows and greens, and the DAVIS palette's object 1 is dark red (128, 0, 0): on a look-alike video the
  target, its look-alikes and the overlay would all be red.
- ``"davis"``: the DAVIS palette itself, the colours of the palette PNG files (:data:`DAVIS_PALETTE`).

:func:`set_object_palette` chooses the palette for everything drawn afterwards; each drawing function also takes
``palette=``. Error highlights in :func:`compare_masks` use pure yellow, cyan and magenta, which neither palette's
first eight entries use, so an error is never confused with an object.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
from matplotlib.patches import Patch

from isvos_lite.data.palette import DAVIS_PALETTE
from isvos_lite.viz.arrays import MAX_OBJECT_ID, as_mask

__all__ = [
    "DAVIS_PALETTE", "CONTRAST_PALETTE", "OBJECT_PALETTES", "object_palette", "set_object_palette",
    "object_color", "object_color_hex", "colorize_ids", "object_legend_handles", "ERROR_COLORS", "METHOD_COLORS",
]

# Okabe & Ito's colour-blind-safe set (https://jfly.uni-koeln.de/color/), black left out, ordered so that object 1
# (the target of every look-alike video) is blue; ids 9..255 keep their DAVIS colours
_OKABE_ITO = ((0, 114, 178), (230, 159, 0), (204, 121, 167), (86, 180, 233), (0, 158, 115), (240, 228, 66),
              (213, 94, 0), (153, 153, 153))
CONTRAST_PALETTE: np.ndarray = DAVIS_PALETTE.copy()
CONTRAST_PALETTE[1:1 + len(_OKABE_ITO)] = _OKABE_ITO
CONTRAST_PALETTE.setflags(write=False)

OBJECT_PALETTES: dict[str, np.ndarray] = {"contrast": CONTRAST_PALETTE, "davis": DAVIS_PALETTE}
_active_palette = ["contrast"]


def object_palette(palette: str | None = None) -> np.ndarray:
    """The (256, 3) uint8 palette named ``palette`` ("contrast" or "davis"); None: the active one."""
    name = _active_palette[0] if palette is None else palette
    if name not in OBJECT_PALETTES:
        raise ValueError(f"palette: expected one of {', '.join(map(repr, OBJECT_PALETTES))}, got {palette!r}")
    return OBJECT_PALETTES[name]


def set_object_palette(palette: str) -> str:
    """Make ``palette`` ("contrast" or "davis") the colours of everything drawn from now on; returns the previous one."""
    object_palette(palette)                                            # validates the name
    previous, _active_palette[0] = _active_palette[0], palette
    return previous

# colours for the three kinds of mask error (see overlays.error_map); RGB in 0..255
ERROR_COLORS: dict[str, tuple[int, int, int]] = {
    "missed": (255, 255, 0),        # ground-truth object pixel predicted as background
    "spurious": (0, 255, 255),      # background pixel predicted as an object
    "wrong object": (255, 0, 255),  # pixel given to another object
}

# methods (curves of several models) are not objects: they use matplotlib's categorical cycle
METHOD_COLORS: tuple[str, ...] = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple",
                                  "tab:brown", "tab:pink", "tab:gray", "tab:olive", "tab:cyan")


def object_color(object_id: int, palette: str | None = None) -> np.ndarray:
    """The RGB colour of object ``object_id`` as 3 floats in [0, 1] (row ``object_id`` of the palette)."""
    object_id = int(object_id)
    if not 0 <= object_id <= MAX_OBJECT_ID:
        raise ValueError(f"object_id must lie in 0..{MAX_OBJECT_ID}, got {object_id}")
    return object_palette(palette)[object_id].astype(np.float64) / 255.0


def object_color_hex(object_id: int, palette: str | None = None) -> str:
    """The colour of object ``object_id`` as '#rrggbb' (for widget labels)."""
    red, green, blue = (int(round(255 * value)) for value in object_color(object_id, palette))
    return f"#{red:02x}{green:02x}{blue:02x}"


def colorize_ids(mask, palette: str | None = None) -> np.ndarray:
    """(H, W) object ids -> (H, W, 3) uint8, each pixel the palette colour of its id (background black)."""
    colours = object_palette(palette).copy()
    colours[0] = 0
    return colours[as_mask(mask, "mask")]


def object_legend_handles(object_ids: Iterable[int], palette: str | None = None) -> list[Patch]:
    """Legend patches "object k" in the palette colour of each id (background skipped)."""
    return [Patch(facecolor=object_color(object_id, palette), edgecolor="black", label=f"object {int(object_id)}")
            for object_id in object_ids if int(object_id) != 0]
