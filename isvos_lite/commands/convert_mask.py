"""``isvos-lite convert-mask --mask IN --out OUT.png [--tolerance T] [--max-objects N] [--min-object-pixels P]``

Turns a colour, grey, anti-aliased or JPEG-compressed mask into the palette PNG of object ids that ``predict``,
``eval`` and the datasets read (:func:`isvos_lite.data.palette.convert_rgb_mask`): colours are snapped to a few
main ones first, and a result with implausibly many or tiny objects is refused with what to do.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def add_arguments(parser) -> None:
    from isvos_lite.data.palette import CONVERT_MAX_OBJECTS, CONVERT_TOLERANCE
    parser.add_argument("--mask", required=True, metavar="IN", help="the mask image to convert (PNG, JPEG, ...)")
    parser.add_argument("--out", required=True, metavar="OUT.png", help="the palette PNG to write (pixel value = object id)")
    parser.add_argument("--tolerance", type=float, default=CONVERT_TOLERANCE,
                        help=f"RGB distance within which colours are merged (default {CONVERT_TOLERANCE:g})")
    parser.add_argument("--max-objects", type=int, default=CONVERT_MAX_OBJECTS,
                        help=f"refuse a result with more objects than this (default {CONVERT_MAX_OBJECTS})")
    parser.add_argument("--min-object-pixels", type=int, default=None, metavar="P",
                        help="refuse a result with an object smaller than P pixels (default: 0.02%% of the image, >= 4)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")


def run(args) -> int:
    from isvos_lite.data.palette import convert_rgb_mask, read_mask

    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise ValueError(f"--out {out}: a mask must be saved as .png (JPEG would blur the ids again)")
    if out.exists() and not args.overwrite:
        raise ValueError(f"--out {out} exists; pass --overwrite to replace it")
    mapping = convert_rgb_mask(args.mask, out, tolerance=args.tolerance, max_objects=args.max_objects,
                               min_object_pixels=args.min_object_pixels)
    ids = read_mask(out)
    areas = {int(i): int(n) for i, n in zip(*np.unique(ids, return_counts=True)) if i != 0}
    for colour, object_id in sorted(mapping.items(), key=lambda item: item[1]):
        what = "background" if object_id == 0 else f"object {object_id}: {areas.get(object_id, 0)} pixels"
        print(f"  colour {colour} -> {what}")
    print(f"wrote {out} ({len(areas)} object(s), ids {sorted(areas)})")
    return 0
