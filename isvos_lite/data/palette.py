"""Mask and frame image I/O in the DAVIS format: indexed-palette PNGs where palette index = object id.

DAVIS 2017, YouTube-VOS and every result folder of the official evaluation store a segmentation
as an 8-bit "P" (palette) PNG. The pixel value *is* the object id (0 = background), and the
palette only decides how it looks. The palette is the PASCAL VOC colormap: (0,0,0), (128,0,0),
(0,128,0), (128,128,0), (0,0,128), ...

The most common user problem in the reference implementations (peers.md §6, item 2; XMem's
PALETTE.md) is a mask in the wrong format: an RGB screenshot of a palette mask, an anti-aliased
drawing with hundreds of stray grey levels, or a 0/255 binary mask. Each would silently become
wrong object ids, so :func:`read_mask` refuses them with a message that names the file and
says how to convert it (:func:`convert_rgb_mask` does the RGB case in one call).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from isvos_lite.atomic import atomic_path

__all__ = [
    "DAVIS_PALETTE",
    "MAX_OBJECT_IDS",
    "read_mask",
    "read_annotation",
    "write_mask",
    "read_frame",
    "write_frame",
    "convert_rgb_mask",
    "colorize_mask",
    "check_same_size",
]



# more distinct ids than this in one mask is almost always an anti-aliased or photographed mask
MAX_OBJECT_IDS = 32
# convert_rgb_mask: colours closer than this (RGB distance) are one colour; DAVIS palette colours are >= 64 apart
# only above index 7, the first seven are >= 128 apart. More objects than CONVERT_MAX_OBJECTS is refused.
CONVERT_TOLERANCE = 64.0
CONVERT_MAX_OBJECTS = 10
PALETTE_MATCH = 24.0          # a snapped colour this close to a DAVIS palette colour keeps its palette index


def _voc_colormap(n: int = 256) -> np.ndarray:
    """The PASCAL VOC / DAVIS colormap: bits of the index spread over the high bits of R, G, B."""
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for index in range(n):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        cmap[index] = (r, g, b)
    return cmap


DAVIS_PALETTE: np.ndarray = _voc_colormap()   # (256, 3) uint8; row i is the colour of object id i
DAVIS_PALETTE.setflags(write=False)

_CONVERT = "`isvos-lite convert-mask --mask {src} --out {src_stem}_ids.png`"
_RGB_FIX = (
    "convert it to an indexed-palette PNG (pixel value = object id): " + _CONVERT + " (in Python: "
    "isvos_lite.data.palette.convert_rgb_mask). It snaps the colours to a few (JPEG and anti-aliasing noise "
    "included), keeps DAVIS palette colours' ids, numbers other colours 1, 2, ... by size, and refuses results "
    "with implausibly many or tiny objects"
)


# --------------------------------------------------------------------------------------
# opening files with clear errors
# --------------------------------------------------------------------------------------

def _open_image(path: Path, what: str) -> Image.Image:
    """Open and fully decode an image, turning every failure into an error that names the file."""
    if not path.exists():
        raise FileNotFoundError(f"{what} {path} does not exist; check the path (and the frame/sequence name)")
    if path.is_dir():
        raise ValueError(f"{what} {path} is a directory, expected an image file")
    if path.stat().st_size == 0:
        raise ValueError(f"{what} {path} is an empty (zero-byte) file; re-export or re-download it")
    try:
        image = Image.open(path)
        image.load()   # decode now, so truncated files fail here and not later
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"{what} {path} is corrupt or not an image ({err}); re-export or re-download it") from err
    return image


# --------------------------------------------------------------------------------------
# masks
# --------------------------------------------------------------------------------------

def read_mask(path: str | os.PathLike, *, allow_many_ids: bool = False, binary: bool = False) -> np.ndarray:
    """Read a segmentation mask as object ids.

    Args:
        path: a PNG. Accepted: palette ("P") PNG (DAVIS / YouTube-VOS format), 8-bit grayscale ("L")
            or 1-bit ("1") whose values are the ids.
        allow_many_ids: accept more than ``MAX_OBJECT_IDS`` distinct ids (e.g. a panoptic map).
        binary: treat the mask as foreground/background: ``value > 127`` for grayscale,
            ``value > 0`` for palette masks, returned as ids {0, 1}. Use it for 0/255 masks and
            anti-aliased drawings.

    Returns:
        (H, W) uint8 array of object ids, 0 = background.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: empty/corrupt file, RGB(A) mask, value 255 (VOC "void" or a 0/255 binary mask),
            or too many distinct values (anti-aliasing); the message says how to fix it.
    """
    path = Path(path)
    image = _open_image(path, "mask")
    mode = image.mode
    stem = str(path.with_suffix(""))

    if mode in ("RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "LA", "PA"):
        if mode in ("LA", "PA"):
            raise ValueError(f"mask {path} has an alpha channel (mode {mode}); save it without alpha as a palette or grayscale PNG")
        raise ValueError(f"mask {path} is a colour ({mode}) image, so its colours are not object ids; " + _RGB_FIX.format(src=path, src_stem=stem))
    if mode == "1":
        ids = np.asarray(image, dtype=np.uint8)     # bool -> 0/1
    elif mode == "P":
        ids = np.asarray(image, dtype=np.uint8)
        if binary:
            ids = (ids > 0).astype(np.uint8)
    elif mode in ("L", "I", "I;16", "I;16B", "I;16L", "F"):
        values = np.asarray(image)
        if values.ndim != 2:
            raise ValueError(f"mask {path} has shape {values.shape}; expected a single-channel image")
        if binary:
            threshold = 127 if mode == "L" else values.max() / 2
            ids = (values > threshold).astype(np.uint8)
        else:
            if mode == "F" and not np.all(values == np.round(values)):
                raise ValueError(f"mask {path} holds fractional values; save integer object ids (0 = background) as a palette PNG")
            if values.min() < 0 or values.max() > 255:
                raise ValueError(
                    f"mask {path} has values {values.min()}..{values.max()}, outside 0..255; "
                    "object ids must fit in uint8 (re-number the objects 1, 2, ...)")
            ids = values.astype(np.uint8)
    else:
        raise ValueError(f"mask {path} has unsupported image mode {mode!r}; save it as a palette or grayscale PNG")

    if binary:
        return np.ascontiguousarray(ids)

    present = np.unique(ids)
    if 255 in present:
        n = int((ids == 255).sum())
        raise ValueError(
            f"mask {path} contains value 255 ({n} pixels). In VOC/DAVIS masks 255 is the 'void' border label, "
            "and in 0/255 binary masks it means 'foreground' - neither is an object id. "
            "For a 0/255 mask: " + _CONVERT.format(src=path, src_stem=stem) + " makes 255 object 1 (in Python: "
            "read_mask(path, binary=True)); for void borders set those pixels to 0 (background) first.")
    object_ids = present[present != 0]
    if len(object_ids) > MAX_OBJECT_IDS and not allow_many_ids:
        raise ValueError(
            f"mask {path} has {len(object_ids)} distinct object ids ({_short_list(object_ids)}); this usually means an "
            "anti-aliased or JPEG-compressed mask whose edge colours became fake objects. Snap them to a few colours with "
            + _CONVERT.format(src=path, src_stem=stem) + ", or redraw without anti-aliasing (in Python: "
            "read_mask(path, binary=True) for one object, allow_many_ids=True if the ids are real).")
    return np.ascontiguousarray(ids)


def read_annotation(path: str | os.PathLike, what: str = "annotation") -> np.ndarray:
    """A DAVIS mask PNG as (H, W) uint8 ids, decoded exactly as the official code does.

    ``np.array(Image.open(path))``: the palette index (P) or grey value (L, 1, I;16) is the id
    (docs/DAVIS_METRIC.md §4). 255, the void label of annotations, is kept; callers decide what it means.
    Colour images are refused. ``what`` names the file's role in error messages.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            values = np.array(image)          # a writable copy
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"{what} {path} is corrupt or not an image ({err}); re-create or re-download it") from err
    if mode not in ("P", "L", "1", "I", "I;16", "I;16L", "I;16B") or values.ndim != 2:
        raise ValueError(
            f"{what} {path} is a {mode} image; DAVIS masks are indexed (P) or greyscale (L) PNGs "
            "whose pixel values are object ids")
    if values.dtype != np.uint8:
        if values.size and (values.min() < 0 or values.max() > 255):
            raise ValueError(f"{what} {path} has values {values.min()}..{values.max()}; object ids must be 0..255")
        values = values.astype(np.uint8)
    return values


def write_mask(path: str | os.PathLike, mask: np.ndarray, palette: np.ndarray | None = None, atomic: bool = True) -> Path:
    """Write (H, W) integer object ids as an indexed-palette PNG, atomically (temp file + os.replace).

    ``palette`` defaults to :data:`DAVIS_PALETTE`. Parent folders are created. ``atomic=False``
    writes in place (for callers that already write into a temporary folder).
    """
    path = Path(path)
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"write_mask({path}): mask must be (H, W) object ids, got shape {mask.shape}")
    if mask.dtype == np.bool_:
        mask = mask.astype(np.uint8)
    if not np.issubdtype(mask.dtype, np.integer):
        raise ValueError(f"write_mask({path}): mask must hold integer object ids, got dtype {mask.dtype}")
    if mask.size and (mask.min() < 0 or mask.max() > 255):
        raise ValueError(f"write_mask({path}): object ids must be in 0..255, got {mask.min()}..{mask.max()}")
    palette = DAVIS_PALETTE if palette is None else np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    image = Image.fromarray(mask.astype(np.uint8), mode="P")
    image.putpalette(palette[:256].reshape(-1).tolist())
    _save(image, path, atomic, format="PNG")
    return path


def colorize_mask(mask: np.ndarray) -> np.ndarray:
    """(H, W) object ids -> (H, W, 3) uint8 RGB with the DAVIS palette colours."""
    return DAVIS_PALETTE[np.asarray(mask, dtype=np.uint8)]


def convert_rgb_mask(src: str | os.PathLike, dst: str | os.PathLike, *, tolerance: float = CONVERT_TOLERANCE,
                     max_objects: int = CONVERT_MAX_OBJECTS,
                     min_object_pixels: int | None = None) -> dict[tuple[int, int, int], int]:
    """Convert a colour (or grey) mask into a palette PNG of object ids; returns {snapped colour: id}.

    Made for masks drawn in a paint program, screenshots, and masks saved as JPEG: the colours are first **snapped
    to a small palette** (:func:`snap_colours`): the main colours of flat regions, with everything within
    ``tolerance`` of one of them, or on a blend of two of them (anti-aliased or JPEG-smeared edges), merged into it.
    Each pixel then takes the nearest main colour. Black is background (0); a colour within a few levels of a DAVIS
    palette colour keeps that palette index (an RGB screenshot of a DAVIS mask round-trips exactly); any other colour
    gets the next free id, largest region first (a white-on-black 0/255 mask becomes object 1).

    Refuses, with a message that says what to do, a result that is not plausibly a mask: more than ``max_objects``
    objects, or an object smaller than ``min_object_pixels`` (default: 0.02 % of the image, at least 4 pixels) —
    what compression noise or a photographed mask gives.
    """
    src = Path(src)
    image = _open_image(src, "mask")
    rgb = np.asarray(image.convert("RGB"))                        # (H, W, 3)
    H, W = rgb.shape[:2]
    min_pixels = max(4, round(2e-4 * H * W)) if min_object_pixels is None else int(min_object_pixels)
    colours, inverse = np.unique(rgb.reshape(-1, 3), axis=0, return_inverse=True)       # (U, 3), (H*W,)
    centres = snap_colours(rgb, tolerance)                                                # (M, 3)
    nearest = np.linalg.norm(colours[:, None, :].astype(np.float64) - centres[None], axis=2).argmin(1)   # (U,)
    labels = nearest[inverse.reshape(-1)].reshape(H, W)                                   # (H, W) centre index
    areas = np.bincount(labels.reshape(-1), minlength=len(centres))
    snapped = f"its {len(colours)} colours snap to {len(centres)} (tolerance {tolerance:g})"

    # centre -> id: black -> 0, a DAVIS palette colour -> its index, others -> next free ids by area
    palette = DAVIS_PALETTE[:255].astype(np.float64)
    ids_of = {}
    to_black = np.linalg.norm(centres, axis=1)
    if to_black.min() <= tolerance:
        ids_of[int(to_black.argmin())] = 0
    for c, centre in enumerate(centres):
        if c in ids_of:
            continue
        distance = np.linalg.norm(palette - centre, axis=1)
        index = int(distance[1:].argmin()) + 1
        if distance[index] <= PALETTE_MATCH and index not in ids_of.values():
            ids_of[c] = index
    next_id = 1
    for c in np.argsort(-areas, kind="stable"):
        if int(c) in ids_of:
            continue
        while next_id in ids_of.values():
            next_id += 1
        ids_of[int(c)] = next_id

    objects = {ids_of[c]: int(areas[c]) for c in range(len(centres)) if ids_of[c] != 0}
    fix = (f"Save the mask from your drawing program as PNG with hard edges (no anti-aliasing, no JPEG), or raise the "
           f"limit if the objects are real (`isvos-lite convert-mask --max-objects N --min-object-pixels P`, "
           f"or convert_rgb_mask(..., max_objects=N, min_object_pixels=P) in Python)")
    if len(objects) > max_objects:
        raise ValueError(f"mask {src}: {snapped}, which still leaves {len(objects)} objects, more than "
                         f"max_objects={max_objects}: this looks like a photographed or heavily compressed mask, "
                         f"not object ids. " + fix)
    tiny = {i: a for i, a in objects.items() if a < min_pixels}
    if tiny:
        listed = ", ".join(f"id {i}: {a} px" for i, a in sorted(tiny.items()))
        raise ValueError(f"mask {src}: {snapped}; {len(tiny)} of the {len(objects)} objects are tiny ({listed}; "
                         f"min_object_pixels={min_pixels}): compression or anti-aliasing specks, not objects. " + fix)
    lookup = np.array([ids_of[c] for c in range(len(centres))], dtype=np.uint8)
    write_mask(dst, lookup[labels])
    return {tuple(int(v) for v in centres[c]): ids_of[c] for c in range(len(centres))}


def snap_colours(rgb: np.ndarray, tolerance: float = CONVERT_TOLERANCE, flat_tolerance: int = 24,
                 min_seed_pixels: int = 8) -> np.ndarray:
    """The main colours of a mask image: (H, W, 3) uint8 -> (M, 3) uint8, most frequent first.

    Only **flat** pixels (all four neighbours within ``flat_tolerance`` in every channel) propose colours, so the
    smeared edges of a JPEG or an anti-aliased drawing cannot. Going through their colours from the most frequent,
    a colour becomes a main colour unless it lies within ``tolerance`` of a main colour or of the line between two
    (a blend: the halo around a red object on black is dark red), or its unexplained neighbourhood holds fewer than
    ``min_seed_pixels`` flat pixels.
    """
    flat = _flat_pixels(rgb, flat_tolerance)
    if not flat.any():
        flat = np.ones(rgb.shape[:2], dtype=bool)
    colours, counts = np.unique(rgb[flat].reshape(-1, 3), axis=0, return_counts=True)    # (U, 3), (U,)
    points = colours.astype(np.float64)
    explained = np.zeros(len(colours), dtype=bool)
    centres: list[np.ndarray] = []
    for i in np.argsort(-counts, kind="stable"):
        if explained[i]:
            continue
        near = np.linalg.norm(points - points[i], axis=1) <= tolerance
        if counts[near & ~explained].sum() >= min_seed_pixels:
            for centre in centres:                                  # blends of the new colour with an older one
                near |= _distance_to_segment(points, centre, points[i]) <= tolerance
            centres.append(points[i])
        explained |= near
    if not centres:
        centres = [points[counts.argmax()]]
    return np.array(centres).astype(np.uint8)


def _flat_pixels(rgb: np.ndarray, flat_tolerance: int) -> np.ndarray:
    """(H, W, 3) -> (H, W) bool: all four neighbours lie within ``flat_tolerance`` of the pixel in every channel."""
    x = rgb.astype(np.int16)
    H, W = x.shape[:2]
    padded = np.pad(x, ((1, 1), (1, 1), (0, 0)), mode="edge")
    steps = [np.abs(padded[1 + dy:1 + dy + H, 1 + dx:1 + dx + W] - x).max(-1)
             for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1))]
    return np.max(steps, axis=0) <= flat_tolerance


def _distance_to_segment(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(U, 3) points -> (U,) distance of each to the segment from a to b."""
    ab = b - a
    t = np.clip(((points - a) @ ab) / max(float(ab @ ab), 1e-9), 0.0, 1.0)
    return np.linalg.norm(points - (a + t[:, None] * ab), axis=1)


# --------------------------------------------------------------------------------------
# frames
# --------------------------------------------------------------------------------------

def read_frame(path: str | os.PathLike) -> np.ndarray:
    """Read a video frame / image as (H, W, 3) uint8 RGB; grayscale, palette and RGBA are converted."""
    path = Path(path)
    image = _open_image(path, "frame")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        values = np.asarray(image).astype(np.float64)
        scale = 255.0 / max(float(values.max()), 1.0) if values.max() > 255 else 1.0
        gray = np.clip(values * scale, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if image.mode != "RGB":
        image = image.convert("RGB")   # L, P, RGBA (alpha dropped), CMYK, ...
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


def write_frame(path: str | os.PathLike, frame: np.ndarray, quality: int = 92, atomic: bool = True) -> Path:
    """Write (H, W, 3) uint8 RGB as JPEG (or PNG, by suffix), atomically unless ``atomic=False``."""
    path = Path(path)
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"write_frame({path}): expected (H, W, 3) uint8 RGB, got {frame.shape} {frame.dtype}")
    image = Image.fromarray(frame, mode="RGB")
    if path.suffix.lower() in (".jpg", ".jpeg"):
        _save(image, path, atomic, format="JPEG", quality=quality)
    else:
        _save(image, path, atomic, format="PNG")
    return path


def check_same_size(frame: np.ndarray, mask: np.ndarray, frame_path, mask_path) -> None:
    """Raise a clear error when a mask does not have its frame's size (resized masks: Cutie #53)."""
    if frame.shape[:2] != mask.shape[:2]:
        raise ValueError(
            f"mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} (WxH) but its frame {frame_path} is "
            f"{frame.shape[1]}x{frame.shape[0]}; resize the mask with nearest-neighbour interpolation "
            "(Image.resize(size, Image.NEAREST)) so that ids are not blended")


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------

def _save(image: Image.Image, path: Path, atomic: bool, **save_kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not atomic:
        image.save(path, **save_kwargs)
        return
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            image.save(handle, **save_kwargs)


def _short_list(values, limit: int = 8) -> str:
    values = [int(v) for v in values]
    text = ", ".join(str(v) for v in values[:limit])
    return text + (", ..." if len(values) > limit else "")
