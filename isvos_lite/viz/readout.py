"""Readout features as pictures: PCA of (C, h, w) feature maps to RGB (paper Fig. 8).

The memory readout F_mem (§3.2) has C_v channels per position; Fig. 8 shows it as colours by
projecting every position's feature vector on the three main principal directions. Colours only
mean something *relative to a basis*, so maps that should be compared (several frames of a video,
the model with and without query enhancement) are projected on one shared basis, fitted on all of
them together: the same colour then means the same feature everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from isvos_lite.viz.arrays import as_frame, to_numpy
from isvos_lite.viz.figures import grid_shape, new_figure, style_image_axes
from isvos_lite.viz.overlays import draw_overlay

__all__ = ["as_feature_map", "PCABasis", "readout_pca_rgb", "shared_bases", "plot_readout_features"]


def as_feature_map(features: Any, name: str = "features") -> np.ndarray:
    """A feature map as a finite float64 (C, h, w) array; a leading batch of size 1 is dropped."""
    array = to_numpy(features, name)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]                                              # (1, C, h, w) -> (C, h, w)
    if array.ndim != 3:
        raise ValueError(f"{name}: expected a feature map of shape (C, h, w), got {array.shape}")
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{name}: expected numbers, got dtype {array.dtype}")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return array


@dataclass
class PCABasis:
    """Three principal directions of a set of feature maps and the colour range of each.

    ``to_rgb`` maps any (C, h, w) map with the same C into (h, w, 3) colours in [0, 1]: channel i is
    the projection on direction i, rescaled from [low_i, high_i] (percentiles of the fitted data).
    """

    mean: np.ndarray         # (C,)
    components: np.ndarray   # (3, C) unit rows, by decreasing variance (zero rows when C < 3)
    low: np.ndarray          # (3,)
    high: np.ndarray         # (3,)

    @classmethod
    def fit(cls, feature_maps: Sequence[Any], clip_percentile: float = 1.0) -> "PCABasis":
        """Fit one basis on all positions of all maps (each (C, h, w), the same C)."""
        if not 0.0 <= clip_percentile < 50.0:
            raise ValueError(f"clip_percentile must lie in [0, 50), got {clip_percentile}")
        maps = [as_feature_map(features, f"features[{index}]") for index, features in enumerate(feature_maps)]
        if not maps:
            raise ValueError("features: empty list; pass at least one (C, h, w) map")
        channels = maps[0].shape[0]
        for index, features in enumerate(maps):
            if features.shape[0] != channels:
                raise ValueError(
                    f"features[{index}] has C = {features.shape[0]} channels but features[0] has C = {channels}; "
                    "a shared PCA basis needs one feature space - project maps of different widths separately")
        vectors = np.concatenate([features.reshape(channels, -1).T for features in maps])  # (N, C)
        mean = vectors.mean(axis=0)
        centred = vectors - mean
        covariance = centred.T @ centred / max(len(vectors), 1)      # (C, C)
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)         # ascending
        order = np.argsort(eigenvalues)[::-1][:3]
        components = np.zeros((3, channels))
        components[: len(order)] = eigenvectors[:, order].T
        for row in components:                                         # fix the sign: largest loading positive
            if np.any(row):
                row *= np.sign(row[np.argmax(np.abs(row))])
        projected = centred @ components.T                             # (N, 3)
        low = np.percentile(projected, clip_percentile, axis=0)
        high = np.percentile(projected, 100.0 - clip_percentile, axis=0)
        return cls(mean=mean, components=components, low=low, high=high)

    def to_rgb(self, features: Any) -> np.ndarray:
        """(C, h, w) features -> (h, w, 3) float colours in [0, 1]."""
        feature_map = as_feature_map(features)
        channels, height, width = feature_map.shape
        if channels != self.mean.shape[0]:
            raise ValueError(f"features: has C = {channels} channels but the basis was fitted on C = {self.mean.shape[0]}")
        projected = (feature_map.reshape(channels, -1).T - self.mean) @ self.components.T   # (h*w, 3)
        span = self.high - self.low
        flat = span <= 1e-12                                            # a direction without variance: mid grey
        scaled = (projected - self.low) / np.where(flat, 1.0, span)
        scaled[:, flat] = 0.5
        return np.clip(scaled, 0.0, 1.0).reshape(height, width, 3)


def readout_pca_rgb(features: Any, clip_percentile: float = 1.0) -> np.ndarray | list[np.ndarray]:
    """PCA of feature maps to RGB (Fig. 8): one (C, h, w) map -> (h, w, 3); a list -> a list, on one shared basis.

    Colours of maps passed together are comparable: the basis and the colour range are fitted on all
    of them at once. ``clip_percentile`` trims outliers from the colour range (0 = min/max).
    """
    if isinstance(features, (list, tuple)):
        basis = PCABasis.fit(features, clip_percentile)
        return [basis.to_rgb(feature_map) for feature_map in features]
    return PCABasis.fit([features], clip_percentile).to_rgb(features)


def shared_bases(features_by_name: Mapping[str, Any], shared_basis: bool | str = "auto",
                 clip_percentile: float = 1.0, extra: Mapping[str, Sequence[Any]] | None = None) -> dict[str, PCABasis]:
    """One PCABasis per name, shared according to ``shared_basis``.

    ``"auto"``: maps with the same channel count share a basis (e.g. readouts of two variants of one
    model), others (e.g. P_2 with C_d channels) get their own; True: all share one (same C needed);
    False: each its own. ``extra`` adds more maps per name to the fit (other frames of the video).
    """
    if shared_basis not in (True, False, "auto"):
        raise ValueError(f"shared_basis must be True, False or 'auto', got {shared_basis!r}")
    maps = {name: [as_feature_map(value, f"features_by_name[{name!r}]")] + [
        as_feature_map(more, f"features_by_name[{name!r}]") for more in (extra or {}).get(name, [])]
        for name, value in features_by_name.items()}
    if shared_basis is False:
        return {name: PCABasis.fit(group, clip_percentile) for name, group in maps.items()}
    if shared_basis is True:
        basis = PCABasis.fit([m for group in maps.values() for m in group], clip_percentile)
        return {name: basis for name in maps}
    by_channels: dict[int, list[str]] = {}
    for name, group in maps.items():
        by_channels.setdefault(group[0].shape[0], []).append(name)
    bases = {}
    for names in by_channels.values():
        basis = PCABasis.fit([m for name in names for m in maps[name]], clip_percentile)
        bases.update({name: basis for name in names})
    return bases


def plot_readout_features(frame: Any, features_by_name: Mapping[str, Any], mask: Any = None,
                          shared_basis: bool | str = "auto", frame_index: int | None = None,
                          bases: Mapping[str, PCABasis] | None = None, ncols: int = 4,
                          clip_percentile: float = 1.0, panel_size: float = 2.8,
                          figure: Figure | None = None) -> Figure:
    """The frame, then each named feature map as PCA colours over the frame's extent (paper Fig. 8).

    Args:
        frame: the query frame (H, W, 3); ``mask`` (H, W) ids are overlaid on it when given.
        features_by_name: {"readout (ISVOS)": (C_v, h, w), "P_2": (C_d, h', w'), ...}.
        shared_basis: see :func:`shared_bases` ("auto": same channel count -> same basis).
        bases: precomputed {name: PCABasis} (e.g. fitted over a whole video), overriding shared_basis.
        figure: draw into this figure (cleared first) instead of a new one.
    """
    image = as_frame(frame, "frame")
    if not features_by_name:
        raise ValueError("features_by_name: is empty; pass at least one {name: (C, h, w)} map")
    if bases is None:
        bases = shared_bases(features_by_name, shared_basis, clip_percentile)
    missing = [name for name in features_by_name if name not in bases]
    if missing:
        raise ValueError(f"bases: no PCABasis for {missing}")
    height, width = image.shape[:2]
    rows, cols = grid_shape(len(features_by_name) + 1, ncols)
    figure, axes = new_figure(rows, cols, panel_size=(panel_size, panel_size * height / width + 0.4), figure=figure)
    draw_overlay(axes.flat[0], image, mask, title=f"frame {frame_index}" if frame_index is not None else "frame")
    for ax, (name, features) in zip(axes.flat[1:], features_by_name.items()):
        ax.imshow(bases[name].to_rgb(features), interpolation="nearest",
                  extent=(-0.5, width - 0.5, height - 0.5, -0.5))
        style_image_axes(ax, str(name))
    for ax in axes.flat[len(features_by_name) + 1:]:
        ax.set_axis_off()
    figure.suptitle("features as PCA colours (3 main directions -> RGB)", fontsize=13)
    return figure
