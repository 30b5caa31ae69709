"""Real photographs for the teaching world: textures, backgrounds and the ``real`` evaluation split.

A model that has only seen procedural textures has never met natural image statistics (soft
shading, clutter, greyscale scenes). The photographs used here ship **inside pip packages**, so
nothing is downloaded at run time:

* scikit-learn: ``sklearn.datasets.load_sample_image("china.jpg")``, ``("flower.jpg")``
  (https://scikit-learn.org/stable/modules/generated/sklearn.datasets.load_sample_image.html);
* matplotlib: ``matplotlib.cbook.get_sample_data("grace_hopper.jpg")``, ``("Minduka_Present_Blue_Pack.png")``;
* scikit-image (https://scikit-image.org/docs/stable/api/skimage.data.html): ``stereo_motorcycle``
  (both views), ``coins``, ``moon``, ``clock``, ``page``, ``text``, ``colorwheel``, ``retina``, ``cell``.

Only these names can be loaded (:data:`ALLOWED_PHOTOS`); every other scikit-image image is held
out for trying the project on real footage and is refused here, so data generation can never use
it. The allowed photographs are split in two:

* :data:`TRAIN_PHOTOS`: the textures and backgrounds of training material (``photo`` texture
  family, photo backgrounds, the instance stream's photo option);
* :data:`REAL_SPLIT_PHOTOS` (``coins``, ``flower.jpg``): only the ``real`` evaluation split
  (:mod:`isvos_lite.data.real_split`) shows them; :func:`photo_crop` refuses them.

Greyscale photographs are returned as 3-channel images (real footage has low-saturation scenes).
Decoded arrays are cached per process and read-only.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

__all__ = ["ALLOWED_PHOTOS", "TRAIN_PHOTOS", "REAL_SPLIT_PHOTOS", "load_photo", "photo_crop", "photo_texture",
           "random_photo_texture_spec"]

_SKLEARN = ("china.jpg", "flower.jpg")
_MATPLOTLIB = ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png")
_SKIMAGE = ("stereo_motorcycle_left", "stereo_motorcycle_right", "coins", "moon", "clock", "page", "text",
            "colorwheel", "retina", "cell")

ALLOWED_PHOTOS: tuple[str, ...] = _SKLEARN + _MATPLOTLIB + _SKIMAGE
# set aside for the `real` evaluation split: never a texture or background of training material
REAL_SPLIT_PHOTOS: tuple[str, ...] = ("coins", "flower.jpg")
TRAIN_PHOTOS: tuple[str, ...] = tuple(p for p in ALLOWED_PHOTOS if p not in REAL_SPLIT_PHOTOS)


def load_photo(name: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB photograph ``name`` (one of :data:`ALLOWED_PHOTOS`), decoded once per process.

    The array is read-only (it is shared by every caller); copy it before changing it.
    """
    if name not in ALLOWED_PHOTOS:
        raise ValueError(f"photograph {name!r} is not one of the photographs the teaching world may use "
                         f"({', '.join(ALLOWED_PHOTOS)}); every other scikit-image image is held out for testing "
                         "on real footage and must not be used to generate data")
    return _load_cached(name)


@functools.lru_cache(maxsize=None)
def _load_cached(name: str) -> np.ndarray:
    image = _decode(name)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    image = np.ascontiguousarray(image[..., :3]).astype(np.uint8)       # RGBA -> RGB
    image.setflags(write=False)
    return image


def _decode(name: str) -> np.ndarray:
    """The raw array of one allowed photograph, from the package that ships it."""
    if name in _SKLEARN:
        from sklearn.datasets import load_sample_image
        return np.asarray(load_sample_image(name))
    if name in _MATPLOTLIB:
        from matplotlib import cbook
        from PIL import Image
        with cbook.get_sample_data(name) as handle:
            return np.asarray(Image.open(handle).convert("RGB"))
    from skimage import data
    if name.startswith("stereo_motorcycle_"):
        left, right, _disparity = data.stereo_motorcycle()
        return left if name.endswith("left") else right
    return np.asarray(getattr(data, name)())


# --------------------------------------------------------------------------------------
# random windows of a photograph (textures and backgrounds)
# --------------------------------------------------------------------------------------

def photo_crop(rng: np.random.Generator, height: int, width: int, photos=TRAIN_PHOTOS, *,
               max_rotation: float = np.pi, scale_range: tuple[float, float] = (0.4, 2.2),
               jitter: bool = True, fit_size: tuple[int, int] | None = None) -> np.ndarray:
    """A (height, width, 3) uint8 random window of one of ``photos``: random scale, rotation, flip, colour jitter.

    The window is chosen inside the photograph (no reflected borders): ``scale`` photograph pixels per
    output pixel is log-uniform in ``scale_range``, shrunk when the rotated window would not fit
    (``fit_size`` (h, w), default (height, width), is the window that must fit; a larger output is
    centred on the same point and reflects at the photograph's edges). Colour jitter (``jitter``):
    brightness and contrast gains, per-channel gains, saturation from 0 (greyscale, 25 % of the time)
    to 1.3, and, for greyscale photographs, sometimes a colour tint. The draws of ``rng`` do not depend
    on ``height`` and ``width``. Only :data:`TRAIN_PHOTOS` may be drawn from.
    """
    photos = tuple(photos)
    refused = [p for p in photos if p not in TRAIN_PHOTOS]
    if not photos or refused:
        raise ValueError(f"photo_crop draws training material: photos must be a non-empty subset of TRAIN_PHOTOS, "
                         f"got {refused or photos} ({', '.join(REAL_SPLIT_PHOTOS)} belong to the `real` split only)")
    name = photos[int(rng.integers(0, len(photos)))]
    photo = load_photo(name)
    fit_h, fit_w = fit_size if fit_size is not None else (height, width)
    angle = float(rng.uniform(-max_rotation, max_rotation))
    flip = bool(rng.random() < 0.5)
    ph, pw = photo.shape[:2]
    c, s = abs(np.cos(angle)), abs(np.sin(angle))
    box_w, box_h = fit_w * c + fit_h * s, fit_w * s + fit_h * c           # rotated window, output pixels
    fit = 0.98 * min(pw / box_w, ph / box_h)                              # largest scale that stays inside
    low, high = scale_range
    scale = min(float(np.exp(rng.uniform(np.log(low), np.log(high)))), fit)
    half_w, half_h = box_w * scale / 2, box_h * scale / 2
    cx = float(rng.uniform(half_w, max(half_w, pw - half_w)))
    cy = float(rng.uniform(half_h, max(half_h, ph - half_h)))
    # output (x, y) -> photograph: about the output centre, flip, rotate, scale, move to (cx, cy)
    fx = -1.0 if flip else 1.0
    cos, sin = np.cos(angle) * scale, np.sin(angle) * scale
    ox, oy = (width - 1) / 2, (height - 1) / 2
    matrix = np.array([[cos * fx, -sin, cx - cos * fx * ox + sin * oy],
                       [sin * fx, cos, cy - sin * fx * ox - cos * oy]], dtype=np.float64)
    level = int(np.floor(np.log2(scale))) if scale >= 2 else 0           # a pre-shrunk copy: no aliasing
    source = _photo_level(name, level)
    if level:
        matrix = matrix / np.array([[pw / source.shape[1]], [ph / source.shape[0]]])
    crop = cv2.warpAffine(source, matrix, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REFLECT).astype(np.float32)
    if jitter:
        crop = _colour_jitter(rng, crop, name in GREY_PHOTOS)
    return np.clip(crop, 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=None)
def _photo_level(name: str, level: int) -> np.ndarray:
    """Photograph ``name`` shrunk 2**level times (area averaging), cached."""
    photo = load_photo(name)
    if level == 0:
        return photo
    h, w = photo.shape[:2]
    return cv2.resize(np.asarray(photo), (max(1, w >> level), max(1, h >> level)), interpolation=cv2.INTER_AREA)


# the photographs without colour (returned as 3 equal channels)
GREY_PHOTOS: tuple[str, ...] = ("coins", "moon", "clock", "page", "text", "cell")


def _colour_jitter(rng: np.random.Generator, image: np.ndarray, is_grey: bool) -> np.ndarray:
    """Brightness, contrast, per-channel gain, saturation (incl. full desaturation) and a tint for grey photos.

    A fixed number of draws from ``rng`` whatever the image; contrast pivots on mid-grey (128), so the
    result of a pixel does not depend on the rest of the window.
    """
    tint = rng.uniform(0.55, 1.0, size=3).astype(np.float32)
    use_tint = bool(rng.random() < 0.4) and is_grey
    desaturate = bool(rng.random() < 0.25)
    saturation = float(rng.uniform(0.5, 1.3))
    contrast = float(rng.uniform(0.65, 1.2))
    brightness = float(rng.uniform(0.75, 1.25))
    gains = rng.uniform(0.9, 1.1, size=3).astype(np.float32)
    grey = image.mean(axis=2, keepdims=True)
    if use_tint:
        image = grey * tint / tint.mean()
        grey = image.mean(axis=2, keepdims=True)
    image = grey + (0.0 if desaturate else saturation) * (image - grey)
    return ((image - 128.0) * contrast + 128.0) * brightness * gains


def random_photo_texture_spec(rng: np.random.Generator):
    """A :class:`~isvos_lite.data.shapes.TextureSpec` of the ``photo`` family (a window of a training photograph).

    Its ``seed`` fixes everything (photograph, window, scale, rotation, flip, colour jitter), so look-alikes
    that share the spec wear the very same photograph window.
    """
    from isvos_lite.data.shapes import TextureSpec

    seed = int(rng.integers(0, 2**31 - 1))
    return TextureSpec(kind="photo", color_a=(0, 0, 0), color_b=(255, 255, 255), period=0.0, angle=0.0, seed=seed)


def photo_texture(seed: int, size: int) -> np.ndarray:
    """The (size, size, 3) uint8 tile of a ``photo`` texture; a pure function of ``(seed, size)``.

    Tiles of one seed at two sizes show the same photograph window about the same centre (a larger tile
    shows more around it), like the procedural families drawn in object coordinates.
    """
    rng = np.random.default_rng([int(seed), 0x50484F54])                 # "PHOT"
    return photo_crop(rng, size, size, scale_range=(0.4, 2.0), fit_size=(128, 128))
