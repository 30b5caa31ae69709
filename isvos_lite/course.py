"""Small helpers the course notebooks share: where the data and checkpoints are, and small-run mode.

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

__all__ = ["small_mode", "repo_root", "goto_repo_root", "ensure_teaching_world", "world_version_problem",
           "teaching_checkpoint", "load_teaching_model", "davis_root_from_env", "measured_difference", "CHECKPOINTS"]

# name of each shipped checkpoint (under checkpoints/) and the Table 3 row it stands for
CHECKPOINTS = {
    "full": ("lite.safetensors", "ISVOS (query enhancement + multi-path fusion)"),
    "no_qe": ("lite_no_qe.safetensors", "w/o QE"),
    "no_qe_mpf": ("lite_no_qe_mpf.safetensors", "w/o QE & MPF"),
    # the full model trained with the literal §3.2 injection sigmoid(<Q_g, q_vos> / sqrt(C_h)) (notebook 05)
    "literal": ("lite_literal.safetensors", "ISVOS, literal §3.2 injection"),
}

# what marks a world made by the current (v2) generator: the lookalike split list and these world.json keys
WORLD_V2_SPLIT = "lookalike"
WORLD_V2_KEYS = ("heldout_shapes", "texture_families")


def small_mode() -> bool:
    """True when ``ISVOS_LITE_SMALL=1``: CI-sized runs (seconds), not the learner's real run."""
    return os.environ.get("ISVOS_LITE_SMALL", "0") == "1"


def repo_root() -> Path:
    """The repository root: the folder holding ``pyproject.toml`` above this package (or the working directory)."""
    here = Path(__file__).resolve().parent.parent
    if (here / "pyproject.toml").exists():
        return here
    for folder in [Path.cwd(), *Path.cwd().parents]:
        if (folder / "pyproject.toml").exists() and (folder / "isvos_lite").is_dir():
            return folder
    return Path.cwd()


def goto_repo_root(threads: int | None = None) -> Path:
    """``chdir`` to the repository root so the notebooks' relative paths (data/, checkpoints/) work, and set
    PyTorch's CPU threads: ``threads``, else ``$ISVOS_LITE_THREADS``, else a default that leaves the cores other
    work keeps busy alone (:mod:`isvos_lite.threads`; one line says what was chosen)."""
    from isvos_lite.threads import use_threads

    root = repo_root()
    os.chdir(root)
    print(use_threads(threads, what="goto_repo_root(threads=...)", how="course.goto_repo_root(threads=N)"))
    return root


def world_version_problem(root: str | os.PathLike) -> str | None:
    """Why the DAVIS-layout world at ``root`` is not a teaching world of the current (v2) generator, or None.

    A v1 world (the old ``distractor`` split, another frame size, no held-out families) has no
    ``ImageSets/2017/lookalike.txt`` and a ``world.json`` without the v2 keys (``heldout_shapes``,
    ``texture_families``). A folder without ``world.json`` (real DAVIS, say) is not checked for the keys.
    """
    import json

    root = Path(root)
    if not (root / "ImageSets" / "2017" / f"{WORLD_V2_SPLIT}.txt").exists():
        return f"it has no ImageSets/2017/{WORLD_V2_SPLIT}.txt (the v1 generator wrote a `distractor` split instead)"
    meta = root / "world.json"
    if meta.exists():
        try:
            keys = json.loads(meta.read_text())
        except (OSError, ValueError) as err:
            return f"its world.json cannot be read ({err})"
        missing = [k for k in WORLD_V2_KEYS if k not in keys]
        if missing:
            return f"its world.json has no {', '.join(missing)} (written by the v1 generator)"
    return None


def ensure_teaching_world(root: str | os.PathLike | None = None, seed: int = 0, small: bool | None = None) -> Path:
    """The teaching world's folder, generated first if it is missing.

    Default mode: ``data/toy`` with the default world (what ``isvos-lite toy-data --out data/toy --seed 0`` makes,
    ~85 s). Small mode: ``data/toy_small``, a few short videos (seconds).

    A world left by the **v1 generator** (no ``lookalike`` split, no held-out families in ``world.json``; see
    :func:`world_version_problem`) is never used silently, because the notebooks would then score other splits and
    frames than they describe:

    - the course's **own default folders** (``root=None``: ``data/toy``, ``data/toy_small``) are generated
      artefacts that nothing but this function writes, so they are **regenerated** in place (with a printed note);
    - a folder **you passed** as ``root`` may be yours (another seed, another size, an experiment): it is not
      touched, a ``ValueError`` says how to regenerate it (``isvos-lite toy-data --out ROOT --overwrite``).
    """
    from isvos_lite.data.export import WorldSizes, generate_world
    from isvos_lite.data.world import WorldConfig

    small = small_mode() if small is None else small
    own_folder = root is None
    root = Path(root) if root is not None else repo_root() / ("data/toy_small" if small else "data/toy")
    overwrite = False
    if (root / "ImageSets" / "2017" / "val.txt").exists():
        problem = world_version_problem(root)
        if problem is None:
            return root
        if not own_folder:
            raise ValueError(f"{root} is a teaching world of the old (v1) generator: {problem}. Regenerate it with "
                             f"`isvos-lite toy-data --out {root} --overwrite` (or pass another folder)")
        print(f"{root} holds a teaching world of the old (v1) generator ({problem}): regenerating it ...")
        overwrite = True
    elif root.exists() and any(root.iterdir()):
        raise ValueError(f"{root} exists but is not a teaching world (no ImageSets/2017/val.txt); delete it or "
                         f"regenerate it with `isvos-lite toy-data --out {root} --overwrite`")
    else:
        print(f"The teaching world is not at {root}: generating it now (`isvos-lite toy-data --out {root}`) ...")
    if small:
        config = WorldConfig(height=96, width=160, min_frames=10, max_frames=12, eval_min_frames=10, eval_max_frames=12,
                             max_objects=3)
        sizes = WorldSizes(train=8, val=3, lookalike=2, heldout=2, youtube_train=2, youtube_valid=2,
                           coco_train=40, coco_val=10)
    else:
        config, sizes = WorldConfig(), WorldSizes()
    summary = generate_world(root, seed=seed, config=config, sizes=sizes, progress=not small, overwrite=overwrite)
    print(summary)
    return root


def teaching_checkpoint(variant: str = "full") -> Path:
    """Path of a shipped checkpoint (``full``, ``no_qe``, ``no_qe_mpf``, ``literal``), with a clear message if it is missing."""
    if variant not in CHECKPOINTS:
        raise ValueError(f"unknown checkpoint variant {variant!r}; choose one of {', '.join(CHECKPOINTS)}")
    path = repo_root() / "checkpoints" / CHECKPOINTS[variant][0]
    if not path.exists():
        raise FileNotFoundError(
            f"the teaching checkpoint {path} is missing. It ships with the repository (git checkout -- checkpoints/); "
            f"to re-create it run the commands in checkpoints/README.md (about 25 min of instance stage, then about 8 min per model, on 2 CPU cores)")
    return path


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
