"""COCO instance annotations: our own decoder for polygons and (compressed) RLE, and an encoder.

The IS branch (§3.1, Mask2Former) trains on COCO-format instance masks. pycocotools is an
optional extra; this module reads and writes the format with numpy + OpenCV alone, and the
tests check it against pycocotools bit for bit (RLE) and to the pixel border (polygons).

COCO formats of ``annotation["segmentation"]``:
- polygons: ``[[x1, y1, x2, y2, ...], ...]`` in pixel coordinates (one list per part);
- uncompressed RLE: ``{"size": [h, w], "counts": [n0, n1, ...]}`` — run lengths of 0s and 1s
  alternately, starting with 0s, over the mask in column-major (Fortran) order;
- compressed RLE: the same runs with ``counts`` as a string: each run minus the run two before
  it (after the first two), in little-endian 5-bit groups, offset by 48 into printable ASCII,
  bit 0x20 = "more groups follow", bit 0x10 of the last group = sign.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np

__all__ = [
    "rle_encode",
    "rle_decode",
    "rle_to_string",
    "rle_from_string",
    "polygons_to_mask",
    "annotation_to_mask",
    "mask_to_bbox",
    "load_coco_json",
]


# --------------------------------------------------------------------------------------
# RLE
# --------------------------------------------------------------------------------------

def rle_encode(mask: np.ndarray, compressed: bool = True) -> dict:
    """(H, W) binary mask -> COCO RLE dict (counts as a string when ``compressed``)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"rle_encode: mask must be (H, W), got shape {mask.shape}")
    h, w = mask.shape
    flat = (mask.reshape(-1, order="F") > 0).astype(np.int8)                  # column-major
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    counts = np.diff(np.concatenate([[0], changes, [flat.size]])).astype(np.int64).tolist()
    if flat.size and flat[0] == 1:
        counts = [0] + counts          # runs always start with the zeros
    if not flat.size:
        counts = [0]
    return {"size": [h, w], "counts": rle_to_string(counts) if compressed else counts}


def rle_to_string(counts: list[int]) -> str:
    """Run lengths -> COCO's compressed counts string (pycocotools ``rleToString``)."""
    chars = []
    for i, run in enumerate(counts):
        x = int(run)
        if i > 2:
            x -= int(counts[i - 2])
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            chars.append(chr(c + 48))
    return "".join(chars)


def rle_from_string(text: str | bytes) -> list[int]:
    """COCO compressed counts string -> run lengths (pycocotools ``rleFrString``)."""
    if isinstance(text, bytes):
        text = text.decode("ascii")
    counts: list[int] = []
    p = 0
    while p < len(text):
        x = 0
        k = 0
        more = True
        while more:
            if p >= len(text):
                raise ValueError("compressed RLE string ends in the middle of a number; the annotation is corrupt")
            c = ord(text[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def rle_decode(rle: dict) -> np.ndarray:
    """COCO RLE (compressed or not) -> (H, W) uint8 mask of 0/1."""
    try:
        h, w = (int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"RLE must be a dict with 'size': [h, w] and 'counts', got {str(rle)[:80]}") from err
    if isinstance(counts, (str, bytes)):
        counts = rle_from_string(counts)
    counts = np.asarray(counts, dtype=np.int64)
    if np.any(counts < 0) or counts.sum() != h * w:
        raise ValueError(f"RLE runs sum to {int(counts.sum())} but the mask has {h}x{w} = {h * w} pixels; the annotation is corrupt")
    values = np.zeros(len(counts), dtype=np.uint8)
    values[1::2] = 1
    flat = np.repeat(values, counts)
    return np.ascontiguousarray(flat.reshape((h, w), order="F"))


# --------------------------------------------------------------------------------------
# polygons
# --------------------------------------------------------------------------------------

def polygons_to_mask(polygons: list[list[float]], height: int, width: int) -> np.ndarray:
    """COCO polygons (list of flat [x1, y1, x2, y2, ...]) -> (H, W) uint8 0/1 mask via cv2.fillPoly.

    A pixel (x, y) belongs to the mask when its centre (x + 0.5, y + 0.5) lies inside one of the
    polygons; pycocotools agrees to within ~1 % of the pixels, all on the outline. cv2.fillPoly
    also paints every pixel its outline merely touches, so the pixels on the rim of each fill
    are re-tested exactly with cv2.pointPolygonTest. Parts are filled one by one and united (COCO
    parts are a union; fillPoly with several contours would cut overlaps out, even-odd).
    """
    mask = np.zeros((height, width), dtype=np.uint8)
    for poly in polygons:
        coords = np.asarray(poly, dtype=np.float64)
        if coords.size < 6 or coords.size % 2:
            continue   # COCO has a few degenerate polygons (< 3 points); pycocotools ignores them too
        contour = coords.reshape(-1, 2) - 0.5            # OpenCV puts pixel centres at integer coordinates
        layer = np.zeros_like(mask)
        cv2.fillPoly(layer, [np.round(contour * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
        rim = layer & (1 - cv2.erode(layer, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0))
        contour32 = contour.astype(np.float32).reshape(-1, 1, 2)
        for y, x in zip(*np.nonzero(rim)):
            if cv2.pointPolygonTest(contour32, (float(x), float(y)), False) < 0:
                layer[y, x] = 0
        mask |= layer
    return mask


def annotation_to_mask(annotation: dict, height: int, width: int) -> np.ndarray:
    """Decode ``annotation["segmentation"]`` (polygons, RLE or compressed RLE) to (H, W) uint8 0/1."""
    segm = annotation.get("segmentation")
    if segm is None:
        raise ValueError(f"annotation {annotation.get('id')} has no 'segmentation'")
    if isinstance(segm, list):
        return polygons_to_mask(segm, height, width)
    if isinstance(segm, dict):
        mask = rle_decode(segm)
        if mask.shape != (height, width):
            raise ValueError(f"annotation {annotation.get('id')}: RLE size {mask.shape} differs from its image {height}x{width}")
        return mask
    raise ValueError(f"annotation {annotation.get('id')}: unknown segmentation type {type(segm).__name__}")


def mask_to_bbox(mask: np.ndarray) -> list[float]:
    """COCO bbox [x, y, w, h] of a binary mask (zeros for an empty mask)."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


# --------------------------------------------------------------------------------------
# annotation files
# --------------------------------------------------------------------------------------

def load_coco_json(path: str | os.PathLike) -> dict:
    """Load and check a COCO instances JSON; errors name the file and the missing piece."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"COCO annotation file {path} does not exist; "
                                "for the teaching world run `isvos-lite toy-data --out DIR` (it writes DIR/coco/annotations/)")
    if path.stat().st_size == 0:
        raise ValueError(f"COCO annotation file {path} is empty; re-download or regenerate it")
    try:
        with open(path, "r", encoding="utf-8") as handle:
            data = json.load(handle)
    except json.JSONDecodeError as err:
        raise ValueError(f"COCO annotation file {path} is not valid JSON ({err}); re-download or regenerate it") from err
    for key in ("images", "annotations", "categories"):
        if key not in data or not isinstance(data[key], list):
            raise ValueError(f"COCO annotation file {path} has no '{key}' list; is it an instances_*.json file?")
    if not data["categories"]:
        raise ValueError(f"COCO annotation file {path} has no categories")
    return data
