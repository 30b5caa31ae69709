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

__all__ = ["small_mode", "repo_root", "goto_repo_root", "ensure_teaching_world", "teaching_checkpoint",
           "load_teaching_model", "davis_root_from_env", "CHECKPOINTS"]

# name of each shipped checkpoint (under checkpoints/) and the Table 3 row it stands for
CHECKPOINTS = {
    "full": ("lite.safetensors", "ISVOS (query enhancement + multi-path fusion)"),
    "no_qe": ("lite_no_qe.safetensors", "w/o QE"),
    "no_qe_mpf": ("lite_no_qe_mpf.safetensors", "w/o QE & MPF"),
}


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


def goto_repo_root() -> Path:
    """``chdir`` to the repository root so the notebooks' relative paths (data/, checkpoints/) work."""
    root = repo_root()
    os.chdir(root)
    return root


def ensure_teaching_world(root: str | os.PathLike | None = None, seed: int = 0, small: bool | None = None) -> Path:
    """The teaching world's folder, generated first if it is missing.

    Default mode: ``data/toy`` with the default world (what ``isvos-lite toy-data --out data/toy --seed 0`` makes,
    ~30 s). Small mode: ``data/toy_small``, a few short videos (seconds).
    """
    from isvos_lite.data.export import WorldSizes, generate_world
    from isvos_lite.data.world import WorldConfig

    small = small_mode() if small is None else small
    root = Path(root) if root is not None else repo_root() / ("data/toy_small" if small else "data/toy")
    if (root / "ImageSets" / "2017" / "val.txt").exists():
        return root
    if root.exists() and any(root.iterdir()):
        raise ValueError(f"{root} exists but is not a teaching world (no ImageSets/2017/val.txt); delete it or "
                         f"regenerate it with `isvos-lite toy-data --out {root} --overwrite`")
    print(f"The teaching world is not at {root}: generating it now (`isvos-lite toy-data --out {root}`) ...")
    if small:
        config = WorldConfig(height=96, width=160, min_frames=10, max_frames=12, eval_min_frames=10, eval_max_frames=12,
                             max_objects=3)
        sizes = WorldSizes(train=8, val=3, lookalike=2, heldout=2, youtube_train=2, youtube_valid=2,
                           coco_train=40, coco_val=10)
    else:
        config, sizes = WorldConfig(), WorldSizes()
    summary = generate_world(root, seed=seed, config=config, sizes=sizes, progress=not small)
    print(summary)
    return root


def teaching_checkpoint(variant: str = "full") -> Path:
    """Path of a shipped checkpoint (``full``, ``no_qe``, ``no_qe_mpf``), with a clear message if it is missing."""
    if variant not in CHECKPOINTS:
        raise ValueError(f"unknown checkpoint variant {variant!r}; choose one of {', '.join(CHECKPOINTS)}")
    path = repo_root() / "checkpoints" / CHECKPOINTS[variant][0]
    if not path.exists():
        raise FileNotFoundError(
            f"the teaching checkpoint {path} is missing. It ships with the repository (git checkout -- checkpoints/); "
            f"to re-create it run the command in checkpoints/README.md (about 25 min on 2 CPU cores)")
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
