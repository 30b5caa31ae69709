"""Augmentation that keeps frames and masks aligned: every geometric change is one 3x3 matrix.

The training recipes of the references (peers.md §2) chain a clip-wide flip / resized crop and a
per-frame random affine. Here each such step is a 3x3 homogeneous matrix in OpenCV pixel
coordinates (pixel centres at integers); the chain is multiplied into a single matrix and
applied once, with bilinear interpolation to the frame and nearest-neighbour to the mask
(``warp_image`` / ``warp_mask``), so the two can never drift apart. The optional thin-plate-spline
warp of static pretraining (``tps_maps``) is a ``cv2.remap`` map shared the same way.

Colour changes (``color_jitter``, grayscale) touch frames only.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = [
    "IMAGE_FILL",
    "resize_matrix",
    "hflip_matrix",
    "centre_affine_matrix",
    "random_affine_matrix",
    "random_resized_crop_matrix",
    "random_scale_crop_matrix",
    "warp_image",
    "warp_mask",
    "tps_maps",
    "remap_image",
    "remap_mask",
    "color_jitter",
    "to_grayscale",
    "as_size",
]

# fill colour for pixels that come from outside the frame (the mean colour used by STCN/XMem static training)
IMAGE_FILL = (124, 116, 104)


def as_size(size) -> tuple[int, int] | None:
    """int | (h, w) | None -> (h, w) | None, checked."""
    if size is None:
        return None
    if isinstance(size, int):
        size = (size, size)
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) < 8:
        raise ValueError(f"crop size must be an int or (height, width) of at least 8 pixels, got {size}")
    return size


# --------------------------------------------------------------------------------------
# geometry: 3x3 matrices mapping input pixel coordinates (x, y, 1) to output ones
# --------------------------------------------------------------------------------------

def resize_matrix(in_hw: tuple[int, int], out_hw: tuple[int, int]) -> np.ndarray:
    """Stretch the whole input onto the output (pixel-centre aligned, like cv2.resize)."""
    sy = out_hw[0] / in_hw[0]
    sx = out_hw[1] / in_hw[1]
    return np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]], dtype=np.float64)


def hflip_matrix(width: int) -> np.ndarray:
    return np.array([[-1, 0, width - 1], [0, 1, 0], [0, 0, 1]], dtype=np.float64)


def centre_affine_matrix(hw: tuple[int, int], angle_deg: float = 0.0, scale: float = 1.0, shear_deg: float = 0.0,
                         translate: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Rotate, scale and shear about the image centre, then translate (pixels)."""
    cy, cx = (hw[0] - 1) / 2, (hw[1] - 1) / 2
    a = np.deg2rad(angle_deg)
    sh = np.tan(np.deg2rad(shear_deg))
    to_origin = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]], dtype=np.float64)
    rotate = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    shear = np.array([[1, sh, 0], [0, 1, 0], [0, 0, 1]])
    back = np.array([[1, 0, cx + translate[0]], [0, 1, cy + translate[1]], [0, 0, 1]])
    return back @ rotate @ shear @ np.diag([scale, scale, 1.0]) @ to_origin


def random_affine_matrix(rng: np.random.Generator, hw: tuple[int, int], degrees: float = 0.0,
                         scale: tuple[float, float] = (1.0, 1.0), shear: float = 0.0,
                         translate: float = 0.0) -> np.ndarray:
    """torchvision-style RandomAffine as a matrix (angle, scale, shear and translation drawn uniformly)."""
    angle = rng.uniform(-degrees, degrees) if degrees else 0.0
    s = rng.uniform(*scale)
    sh = rng.uniform(-shear, shear) if shear else 0.0
    t = (rng.uniform(-translate, translate) * hw[1], rng.uniform(-translate, translate) * hw[0]) if translate else (0.0, 0.0)
    return centre_affine_matrix(hw, angle, s, sh, t)


def random_resized_crop_matrix(rng: np.random.Generator, in_hw: tuple[int, int], out_hw: tuple[int, int],
                               scale: tuple[float, float] = (0.36, 1.0),
                               ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> np.ndarray:
    """RandomResizedCrop: a box of ``scale`` x area and aspect ``ratio`` x (out aspect), resized to out_hw."""
    h, w = in_hw
    area = h * w
    target_aspect = out_hw[1] / out_hw[0]
    for _ in range(10):
        crop_area = area * rng.uniform(*scale)
        aspect = target_aspect * np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
        cw = np.sqrt(crop_area * aspect)
        ch = np.sqrt(crop_area / aspect)
        if cw <= w and ch <= h:
            x0 = rng.uniform(0, w - cw)
            y0 = rng.uniform(0, h - ch)
            break
    else:   # fall back to the largest centred box of the output aspect
        cw, ch = (w, w / target_aspect) if w / h < target_aspect else (h * target_aspect, h)
        x0, y0 = (w - cw) / 2, (h - ch) / 2
    sx = out_hw[1] / cw
    sy = out_hw[0] / ch
    return np.array([[sx, 0, (0.5 - x0) * sx - 0.5], [0, sy, (0.5 - y0) * sy - 0.5], [0, 0, 1]], dtype=np.float64)


def random_scale_crop_matrix(rng: np.random.Generator, in_hw: tuple[int, int], out_hw: tuple[int, int],
                             scale: tuple[float, float] = (0.5, 1.5)) -> np.ndarray:
    """Large-scale-jitter style: fit the image into out_hw, rescale by ``scale``, random crop/pad to out_hw."""
    fit = min(out_hw[0] / in_hw[0], out_hw[1] / in_hw[1]) * rng.uniform(*scale)
    new_h, new_w = in_hw[0] * fit, in_hw[1] * fit
    x0 = rng.uniform(min(0.0, out_hw[1] - new_w), max(0.0, out_hw[1] - new_w))
    y0 = rng.uniform(min(0.0, out_hw[0] - new_h), max(0.0, out_hw[0] - new_h))
    return np.array([[fit, 0, 0.5 * fit - 0.5 + x0], [0, fit, 0.5 * fit - 0.5 + y0], [0, 0, 1]], dtype=np.float64)


def native_scale_crop_matrix(rng: np.random.Generator, in_hw: tuple[int, int], out_hw: tuple[int, int],
                             zoom: tuple[float, float] = (0.8, 1.25)) -> np.ndarray:
    """ONE-scale crop: zoom the image by a log-uniform factor in ``zoom`` (around 1 = its own resolution), then
    take a random out_hw window (padded where the zoomed image is smaller). Objects keep about the size in pixels
    that inference sees, unlike RandomResizedCrop, which enlarges them by up to 1/sqrt(0.36)."""
    z = float(np.exp(rng.uniform(np.log(zoom[0]), np.log(zoom[1]))))
    new_h, new_w = in_hw[0] * z, in_hw[1] * z
    x0 = rng.uniform(min(0.0, new_w - out_hw[1]), max(0.0, new_w - out_hw[1]))   # window offset, zoomed pixels
    y0 = rng.uniform(min(0.0, new_h - out_hw[0]), max(0.0, new_h - out_hw[0]))
    return np.array([[z, 0, 0.5 * z - 0.5 - x0], [0, z, 0.5 * z - 0.5 - y0], [0, 0, 1]], dtype=np.float64)


def warp_image(image: np.ndarray, matrix: np.ndarray, out_hw: tuple[int, int], fill=IMAGE_FILL) -> np.ndarray:
    """(H, W, 3) uint8 -> (out_h, out_w, 3) uint8, bilinear."""
    return cv2.warpAffine(image, matrix[:2].astype(np.float64), (out_hw[1], out_hw[0]), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=tuple(int(v) for v in fill))


def warp_mask(mask: np.ndarray, matrix: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """(H, W) uint8 ids -> (out_h, out_w) uint8 ids, nearest neighbour, outside = background."""
    return cv2.warpAffine(mask, matrix[:2].astype(np.float64), (out_hw[1], out_hw[0]), flags=cv2.INTER_NEAREST,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


# --------------------------------------------------------------------------------------
# thin-plate-spline warp (static pretraining, peers.md §2: p = 0.33, scale 0.02)
# --------------------------------------------------------------------------------------

def _tps_kernel(d2: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        k = d2 * np.log(d2)
    return np.nan_to_num(k)   # U(0) = 0


def tps_maps(rng: np.random.Generator, hw: tuple[int, int], scale: float = 0.02, grid: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Random thin-plate-spline warp as cv2.remap maps (map_x, map_y), each (H, W) float32.

    Control points on a ``grid`` x ``grid`` lattice move by N(0, scale) (in units of the image
    size); the spline through them gives, for every output pixel, where to sample the input.
    """
    h, w = hw
    g = np.linspace(0, 1, grid)
    dst = np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2)                 # (P, 2) in [0, 1]
    src = dst + rng.normal(0, scale, size=dst.shape)
    n = len(dst)
    k = _tps_kernel(((dst[:, None] - dst[None]) ** 2).sum(-1))               # (P, P)
    p = np.concatenate([np.ones((n, 1)), dst], axis=1)                      # (P, 3)
    system = np.zeros((n + 3, n + 3))
    system[:n, :n] = k
    system[:n, n:] = p
    system[n:, :n] = p.T
    rhs = np.zeros((n + 3, 2))
    rhs[:n] = src
    params = np.linalg.solve(system, rhs)                                    # (P + 3, 2)
    # evaluate on a coarse grid and upsample: the warp is smooth
    coarse_h, coarse_w = min(h, 64), min(w, 64)
    yy, xx = np.meshgrid(np.linspace(0, 1, coarse_h), np.linspace(0, 1, coarse_w), indexing="ij")
    pts = np.stack([xx, yy], axis=-1).reshape(-1, 2)                         # (Q, 2)
    u = _tps_kernel(((pts[:, None] - dst[None]) ** 2).sum(-1))               # (Q, P)
    mapped = u @ params[:n] + np.concatenate([np.ones((len(pts), 1)), pts], axis=1) @ params[n:]
    map_x = cv2.resize((mapped[:, 0] * (w - 1)).reshape(coarse_h, coarse_w).astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    map_y = cv2.resize((mapped[:, 1] * (h - 1)).reshape(coarse_h, coarse_w).astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    return map_x, map_y


def remap_image(image: np.ndarray, maps: tuple[np.ndarray, np.ndarray], fill=IMAGE_FILL) -> np.ndarray:
    return cv2.remap(image, maps[0], maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                     borderValue=tuple(int(v) for v in fill))


def remap_mask(mask: np.ndarray, maps: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return cv2.remap(mask, maps[0], maps[1], cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


# --------------------------------------------------------------------------------------
# colour (frames only)
# --------------------------------------------------------------------------------------

def color_jitter(rng: np.random.Generator, image: np.ndarray, brightness: float = 0.0, contrast: float = 0.0,
                 saturation: float = 0.0, hue: float = 0.0) -> np.ndarray:
    """torchvision-style ColorJitter on (H, W, 3) uint8; factors drawn uniformly in [1 - x, 1 + x], hue in [-x, x] turns."""
    out = image.astype(np.float32) / 255.0
    if brightness:
        out = out * rng.uniform(1 - brightness, 1 + brightness)
    if contrast:
        mean = (out @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).mean()
        out = (out - mean) * rng.uniform(1 - contrast, 1 + contrast) + mean
    if saturation:
        gray = (out @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
        out = (out - gray) * rng.uniform(1 - saturation, 1 + saturation) + gray
    out = np.clip(out, 0, 1)
    if hue:
        hsv = cv2.cvtColor(out.astype(np.float32), cv2.COLOR_RGB2HSV)            # H in degrees
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(-hue, hue) * 360.0) % 360.0
        out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)


def to_grayscale(image: np.ndarray) -> np.ndarray:
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return np.repeat(gray[..., None], 3, axis=2)
