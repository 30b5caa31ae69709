"""Small helpers the course notebooks share: where the data and checkpoints are (:mod:`isvos_lite.data.teaching`),
small-run mode, and the measured-difference verdict behind every claim a notebook prints.

Every notebook starts with::

    from isvos_lite import course
    course.goto_repo_root()
    world = course.ensure_teaching_world()      # generates the teaching world if it is missing
    model = course.load_teaching_model("full")  # the shipped `lite` checkpoint

``ISVOS_LITE_SMALL=1`` (set by CI) makes notebooks shrink their sizes; here it selects a tiny world.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from isvos_lite.data.teaching import (CHECKPOINTS, WORLD_V2_KEYS, WORLD_V2_SPLIT,  # noqa: F401  (the course's names)
                                     ensure_teaching_world, repo_root, small_mode, teaching_checkpoint,
                                     world_version_problem)

__all__ = ["small_mode", "repo_root", "goto_repo_root", "ensure_teaching_world", "world_version_problem",
           "teaching_checkpoint", "load_teaching_model", "davis_root_from_env", "measured_difference", "CHECKPOINTS"]

def goto_repo_root(threads: int | None = None) -> Path:
    """``chdir`` to the repository root so the notebooks' relative paths (data/, checkpoints/) work, and set
    PyTorch's CPU threads: ``threads``, else ``$ISVOS_LITE_THREADS``, else a default that leaves the cores other
    work keeps busy alone (:mod:`isvos_lite.threads`; one line says what was chosen)."""
    from isvos_lite.threads import use_threads

    root = repo_root()
    os.chdir(root)
    print(use_threads(threads, what="goto_repo_root(threads=...)", how="course.goto_repo_root(threads=N)"))
    return root


def load_teaching_model(variant: str = "full", device: str = "cpu"):
    """The shipped ``lite`` model of a variant, in eval mode."""
    from isvos_lite.checkpoint import load_checkpoint

    return load_checkpoint(teaching_checkpoint(variant), map_location=device)


def davis_root_from_env(var: str = "DAVIS_ROOT", split: str = "val", year: int = 2017) -> Path | None:
    """``$DAVIS_ROOT`` if set (checked to be a DAVIS 2017 folder), else None (use the teaching world)."""
    value = os.environ.get(var)
    if not value:
        return None
    root = Path(value).expanduser()
    problems = []
    if not root.is_dir():
        problems.append("the folder does not exist")
    else:
        for sub in ("JPEGImages/480p", "Annotations/480p", f"ImageSets/{year}/{split}.txt"):
            if not (root / sub).exists():
                problems.append(f"{sub} is missing")
    if problems:
        raise ValueError(f"${var}={value} is not a DAVIS {year} folder: {'; '.join(problems)}. It should contain "
                         f"JPEGImages/480p/, Annotations/480p/ and ImageSets/{year}/ (see data/README.md), or unset "
                         f"{var} to use the teaching world")
    return root


def measured_difference(differences, small: float = 0.5, unit: str = "J&F points") -> dict:
    """Put a measured difference into words that its own numbers cannot contradict (for the notebooks' text).

    Args:
        differences: one number, or paired per-item differences (per video, per frame: a - b for the same item).
        small: below this size (in ``unit``) a single number is called no measurable difference.
        unit: what the numbers are, for the text.

    Returns:
        {"direction": "higher" | "lower" | "same", "mean", "low", "high", "n", "text"}.
        With two or more paired values the 95 % interval is mean ± t·SE (Student's t, n - 1 degrees of freedom) and
        the direction is "higher"/"lower" only if the interval excludes 0 (and |mean| >= ``small``); with one value
        there is no spread, so only its size decides (|value| >= ``small``), and the text says it is one measurement.
    """
    values = np.atleast_1d(np.asarray(differences, dtype=float))
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {"direction": "same", "mean": float("nan"), "low": float("nan"), "high": float("nan"), "n": 0,
                "text": "nothing was measured"}
    mean = float(values.mean())
    if values.size == 1:
        direction = "same" if abs(mean) < small else ("higher" if mean > 0 else "lower")
        return {"direction": direction, "mean": mean, "low": mean, "high": mean, "n": 1,
                "text": f"{mean:+.2f} {unit} (one measurement, no spread to judge it by)"}
    from scipy import stats

    half = float(stats.t.ppf(0.975, values.size - 1) * values.std(ddof=1) / np.sqrt(values.size))
    low, high = mean - half, mean + half
    if low > 0 and abs(mean) >= small:
        direction = "higher"
    elif high < 0 and abs(mean) >= small:
        direction = "lower"
    else:
        direction = "same"
    wins, losses = int((values > 0).sum()), int((values < 0).sum())
    return {"direction": direction, "mean": mean, "low": low, "high": high, "n": int(values.size),
            "text": f"{mean:+.2f} {unit} (95 % interval [{low:+.2f}, {high:+.2f}] over {values.size} paired values; "
                    f"higher in {wins}, lower in {losses})"}
