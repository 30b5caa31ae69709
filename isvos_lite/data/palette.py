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
    "write_mask",
    "read_frame",
    "write_frame",
    "convert_rgb_mask",
    "colorize_mask",
    "check_same_size",
]



# more distinct ids than this in one mask is almost always an anti-aliased or photographed mask
MAX_OBJECT_IDS = 32


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

_RGB_FIX = (
    "convert it to an indexed-palette PNG (pixel value = object id), e.g. "
    "`python -c \"from isvos_lite.data.palette import convert_rgb_mask; convert_rgb_mask('{src}', '{src_stem}_ids.png')\"` "
    "(maps DAVIS palette colours to their ids, other colours to 1, 2, ... by size), "
    "or in Pillow: Image.open(p).convert('RGB').quantize(palette=<a P image with the DAVIS palette>, dither=Image.Dither.NONE)"
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
            "For a binary mask use read_mask(path, binary=True) or save (mask > 127) as ids 0/1; "
            "for void borders set those pixels to 0 (background) first.")
    object_ids = present[present != 0]
    if len(object_ids) > MAX_OBJECT_IDS and not allow_many_ids:
        raise ValueError(
            f"mask {path} has {len(object_ids)} distinct object ids ({_short_list(object_ids)}); this usually means an "
            "anti-aliased or JPEG-compressed mask whose edge colours became fake objects. Redraw without anti-aliasing "
            "or threshold it (read_mask(path, binary=True) for one object); pass allow_many_ids=True if the ids are real.")
    return np.ascontiguousarray(ids)


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


def convert_rgb_mask(src: str | os.PathLike, dst: str | os.PathLike) -> dict[tuple[int, int, int], int]:
    """Convert an RGB colour mask into a palette PNG of object ids; returns {colour: id}.

    Colours that are DAVIS palette colours keep their palette index (so an RGB screenshot of a
    DAVIS mask round-trips exactly). Any other colour gets the next free id, largest region first;
    black is background. Refuses images with more than ``MAX_OBJECT_IDS`` colours (anti-aliasing).
    """
    src = Path(src)
    image = _open_image(src, "mask")
    rgb = np.asarray(image.convert("RGB"))                        # (H, W, 3)
    flat = rgb.reshape(-1, 3)
    colours, inverse, counts = np.unique(flat, axis=0, return_inverse=True, return_counts=True)
    if len(colours) > MAX_OBJECT_IDS + 1:
        raise ValueError(
            f"mask {src} has {len(colours)} distinct colours: it is anti-aliased or JPEG-compressed. "
            "Redraw it without anti-aliasing (nearest-neighbour, hard edges) and save it as PNG.")
    palette_index = {tuple(int(v) for v in c): i for i, c in enumerate(DAVIS_PALETTE)}
    mapping: dict[tuple[int, int, int], int] = {}
    used = set()
    for colour in colours:
        key = tuple(int(v) for v in colour)
        if key in palette_index and palette_index[key] < 255:
            mapping[key] = palette_index[key]
            used.add(palette_index[key])
    next_id = 1
    for order in np.argsort(-counts, kind="stable"):
        key = tuple(int(v) for v in colours[order])
        if key in mapping:
            continue
        while next_id in used:
            next_id += 1
        mapping[key] = next_id
        used.add(next_id)
    lookup = np.array([mapping[tuple(int(v) for v in c)] for c in colours], dtype=np.uint8)
    ids = lookup[inverse.reshape(-1)].reshape(rgb.shape[:2])
    write_mask(dst, ids)
    return mapping


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
