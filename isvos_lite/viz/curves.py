"""Curves: per-frame J&F (paper Fig. 1), memory size vs. J&F (Fig. 7), training losses.

Per-frame scores keep what the DAVIS evaluation computes before averaging (per object and frame
J and F, §4.1); Fig. 1 plots their J&F over time for two methods on one video, and shows where
vanilla matching falls off when the target's appearance changes. Fig. 7 plots J&F against the
maximum memory size of the FIFO memory bank. Loss curves read the training log rows.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from isvos_lite.viz.arrays import to_numpy
from isvos_lite.viz.colors import METHOD_COLORS, object_color
from isvos_lite.viz.figures import new_figure

__all__ = [
    "per_frame_curve", "curve_style", "plot_jf_curves", "plot_memory_tradeoff",
    "load_metrics_log", "smooth_ema", "plot_loss_curves",
]

METRICS = ("J&F", "J", "F")


def per_frame_curve(scores: Mapping[str, Any], metric: str = "J&F", name: str = "scores") -> tuple[np.ndarray, np.ndarray]:
    """(frame indices, values) of one curve from {"J": ..., "F": ..., optional "frames": ...}.

    J and F are (T,) per frame, or (O, T) per object and frame (averaged over objects, NaN-aware:
    an object absent from a frame does not count). "J&F" is (J + F) / 2 unless given directly.
    "frames" are the video frame numbers of the T values (DAVIS scoring skips the first frame).
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if not isinstance(scores, Mapping):
        raise ValueError(f"{name}: expected a dict like {{'J': [...], 'F': [...]}}, got {type(scores).__name__}")

    def series(key: str) -> np.ndarray:
        values = to_numpy(scores[key], f"{name}[{key!r}]").astype(np.float64)
        if values.ndim == 2:
            with np.errstate(all="ignore"):
                counts = np.sum(~np.isnan(values), axis=0)
                values = np.where(counts > 0, np.nansum(values, axis=0) / np.maximum(counts, 1), np.nan)  # (T,)
        if values.ndim != 1:
            raise ValueError(f"{name}[{key!r}]: expected (T,) per frame or (objects, T), got shape {values.shape}")
        return values

    if metric in scores:
        values = series(metric)
    elif metric == "J&F" and "J" in scores and "F" in scores:
        j_values, f_values = series("J"), series("F")
        if j_values.shape != f_values.shape:
            raise ValueError(f"{name}: J has {j_values.shape[0]} frames but F has {f_values.shape[0]}")
        values = (j_values + f_values) / 2.0
    else:
        raise ValueError(f"{name}: has keys {sorted(scores)}; need {metric!r}" + (" or both 'J' and 'F'" if metric == "J&F" else ""))
    if "frames" in scores:
        frames = to_numpy(scores["frames"], f"{name}['frames']").astype(np.int64).reshape(-1)
        if frames.shape != values.shape:
            raise ValueError(f"{name}['frames']: has {frames.size} frame numbers for {values.size} values")
    else:
        frames = np.arange(values.size)
    return frames, values


def curve_style(name: Any, position: int) -> dict[str, Any]:
    """Integer keys are object ids (palette colour, "object k"); other keys are methods (tab10 cycle)."""
    if isinstance(name, (int, np.integer)) and not isinstance(name, bool):
        return {"color": object_color(int(name)), "label": f"object {int(name)}"}
    return {"color": METHOD_COLORS[position % len(METHOD_COLORS)], "label": str(name)}


def plot_jf_curves(per_frame: Mapping[Any, Mapping[str, Any]], metric: str = "J&F",
                   frame_indices: Sequence[int] | None = None, highlight_frame: int | None = None,
                   title: str | None = None, ax: Axes | None = None) -> Figure:
    """Per-frame J&F curves of several methods (or objects) on one video, as in paper Fig. 1, **in percent**.

    Args:
        per_frame: {name: {"J": ..., "F": ...}} (see :func:`per_frame_curve`), scores in [0, 1] as the scorer gives
            them; the curves are drawn x100 (percent, the paper's convention). Int names are object ids.
        metric: "J&F", "J" or "F".
        frame_indices: video frame numbers of the values, for all curves (else each entry's "frames" or 0..T-1).
        highlight_frame: draw a vertical line at this frame (the frame a widget is showing).
    """
    if not per_frame:
        raise ValueError("per_frame: is empty; pass {name: {'J': [...], 'F': [...]}}")
    if ax is None:
        figure, axes = new_figure(1, 1, panel_size=(7.0, 3.2))
        ax = axes[0, 0]
    for position, (name, scores) in enumerate(per_frame.items()):
        frames, values = per_frame_curve(scores, metric, name=f"per_frame[{name!r}]")
        if frame_indices is not None:
            frames = np.asarray(frame_indices, dtype=np.int64)
            if frames.shape != values.shape:
                raise ValueError(f"frame_indices: has {frames.size} entries but per_frame[{name!r}] has {values.size} values")
        style = curve_style(name, position)
        mean = float(np.nanmean(values)) if np.any(~np.isnan(values)) else float("nan")
        ax.plot(frames, 100 * values, color=style["color"], linewidth=1.8, marker="o" if values.size <= 30 else None,
                markersize=3, label=f"{style['label']} (mean {100 * mean:.1f})", gid=f"curve:{name}")
    if highlight_frame is not None:
        ax.axvline(highlight_frame, color="0.3", linestyle="--", linewidth=1.0, gid="current_frame")
    ax.set_xlabel("frame t", fontsize=11)
    ax.set_ylabel(f"{metric} (%)", fontsize=11)
    ax.set_ylim(-2, 102)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=10, loc="lower left")
    if title is not None:
        ax.set_title(title, fontsize=12)
    return ax.figure


def plot_memory_tradeoff(sizes: Sequence[float], scores_by_method: Mapping[str, Sequence[float]],
                         ylabel: str = "J&F", title: str | None = None, ax: Axes | None = None) -> Figure:
    """Score against the maximum memory size, one line per method (paper Fig. 7).

    Each method's best score is ringed and its drop at the smallest memory is written in the legend
    (the paper's point: ISVOS loses 0.3 J&F at memory size 2, XMem 1.6).
    """
    size_values = np.asarray(to_numpy(sizes, "sizes"), dtype=np.float64).reshape(-1)
    if size_values.size == 0:
        raise ValueError("sizes: is empty; pass the memory sizes that were evaluated")
    if not scores_by_method:
        raise ValueError("scores_by_method: is empty; pass {method: [score per size]}")
    if ax is None:
        figure, axes = new_figure(1, 1, panel_size=(5.0, 3.4))
        ax = axes[0, 0]
    order = np.argsort(size_values)
    for position, (name, scores) in enumerate(scores_by_method.items()):
        values = np.asarray(to_numpy(scores, f"scores_by_method[{name!r}]"), dtype=np.float64).reshape(-1)
        if values.size != size_values.size:
            raise ValueError(f"scores_by_method[{name!r}]: has {values.size} scores for {size_values.size} memory sizes")
        color = METHOD_COLORS[position % len(METHOD_COLORS)]
        best = int(np.nanargmax(values))
        drop = values[best] - values[order[0]]
        ax.plot(size_values[order], values[order], color=color, marker="o", linewidth=1.8,
                label=f"{name} (best {values[best]:.3g}; -{drop:.2g} at size {size_values[order[0]]:g})")
        ax.scatter([size_values[best]], [values[best]], s=140, facecolors="none", edgecolors=color, linewidths=1.5)
    positive = np.all(size_values > 0)
    if positive and size_values.size > 2 and size_values.max() / size_values.min() >= 8:
        ax.set_xscale("log", base=2)
    ax.set_xticks(size_values[order])
    ax.set_xticklabels([f"{v:g}" for v in size_values[order]])
    ax.set_xlabel("maximum memory size (frames)")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=10)
    if title is not None:
        ax.set_title(title, fontsize=12)
    return ax.figure


def load_metrics_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a training log: a ``.jsonl`` (one JSON object per line) or a ``.csv`` with a header."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"metrics log {path} does not exist; pass the metrics.jsonl / .csv that training wrote")
    suffix = path.suffix.lower()
    rows: list[dict[str, Any]] = []
    if suffix in (".jsonl", ".json"):
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    raise ValueError(f"metrics log {path}, line {number}: not valid JSON ({error.msg})") from None
                if not isinstance(row, dict):
                    raise ValueError(f"metrics log {path}, line {number}: expected a JSON object, got {type(row).__name__}")
                rows.append(row)
    elif suffix == ".csv":
        with open(path, encoding="utf-8", newline="") as handle:
            rows = [dict(row) for row in csv.DictReader(handle)]
    else:
        raise ValueError(f"metrics log {path}: unknown format {suffix!r}; expected .jsonl or .csv")
    return rows


def smooth_ema(values: Sequence[float], smoothing: float) -> np.ndarray:
    """Exponential moving average with bias correction (as TensorBoard); NaNs are skipped and kept."""
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must lie in [0, 1), got {smoothing}")
    values = np.asarray(values, dtype=np.float64)
    out = np.full_like(values, np.nan)
    average, weight = 0.0, 0.0
    for index, value in enumerate(values):
        if math.isnan(value):
            continue
        average = smoothing * average + (1.0 - smoothing) * value
        weight = smoothing * weight + (1.0 - smoothing)
        out[index] = average / weight
    return out


def _numeric(value: Any) -> float:
    if isinstance(value, bool) or value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def plot_loss_curves(log: Sequence[Mapping[str, Any]] | str | os.PathLike, keys: Sequence[str] | None = None,
                     smoothing: float = 0.9, step_key: str = "step", lr_key: str = "lr",
                     log_scale: bool | None = None, title: str | None = None) -> Figure:
    """Training curves: each loss term raw (faint) and EMA-smoothed (solid), and the learning rate.

    Args:
        log: list of row dicts, or a path to a metrics ``.jsonl`` / ``.csv``. Rows need ``step_key``;
            rows without a key (e.g. evaluation rows) just leave gaps.
        keys: the loss columns to draw; default every numeric column whose name contains "loss".
        log_scale: log y-axis for the losses; default when all drawn values are positive.
    """
    source = str(log) if isinstance(log, (str, os.PathLike)) else "log"
    rows = load_metrics_log(log) if isinstance(log, (str, os.PathLike)) else list(log)
    if not rows:
        raise ValueError(f"{source}: has no rows; train for a few steps first")
    if any(step_key not in row for row in rows):
        raise ValueError(f"{source}: every row needs a {step_key!r} column (found columns {sorted(set().union(*rows))})")
    steps = np.array([_numeric(row[step_key]) for row in rows])
    columns = sorted(set().union(*rows))
    numeric = {key: np.array([_numeric(row.get(key)) for row in rows]) for key in columns}
    if keys is None:
        keys = [key for key in columns if "loss" in key.lower() and np.any(~np.isnan(numeric[key]))]
        if not keys:
            raise ValueError(f"{source}: no numeric column with 'loss' in its name (columns: {columns}); pass keys=[...]")
    for key in keys:
        if key not in numeric or np.all(np.isnan(numeric[key])):
            raise ValueError(f"{source}: no numeric values for {key!r} (columns: {columns})")
    has_lr = lr_key in numeric and np.any(~np.isnan(numeric[lr_key]))

    figure, axes = new_figure(1, 2 if has_lr else 1, panel_size=(4.6, 3.2))
    loss_ax = axes[0, 0]
    drawn = []
    for position, key in enumerate(keys):
        color = METHOD_COLORS[position % len(METHOD_COLORS)]
        valid = ~np.isnan(numeric[key]) & ~np.isnan(steps)
        loss_ax.plot(steps[valid], numeric[key][valid], color=color, alpha=0.25, linewidth=0.8)
        loss_ax.plot(steps[valid], smooth_ema(numeric[key][valid], smoothing), color=color, linewidth=1.8,
                     label=key, gid=f"loss:{key}")
        drawn.append(numeric[key][valid])
    if log_scale is None:
        log_scale = all(np.all(values > 0) for values in drawn)
    if log_scale:
        loss_ax.set_yscale("log")
    loss_ax.set_xlabel(step_key)
    loss_ax.set_ylabel("loss" + (f" (EMA {smoothing:g})" if smoothing else ""))
    loss_ax.grid(True, alpha=0.3)
    loss_ax.legend(fontsize=10)
    if has_lr:
        lr_ax = axes[0, 1]
        valid = ~np.isnan(numeric[lr_key]) & ~np.isnan(steps)
        lr_ax.plot(steps[valid], numeric[lr_key][valid], color="0.25", linewidth=1.5, gid="lr")
        lr_ax.set_xlabel(step_key)
        lr_ax.set_ylabel(lr_key)
        lr_ax.grid(True, alpha=0.3)
        lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    if title is not None:
        figure.suptitle(title, fontsize=13)
    return figure
