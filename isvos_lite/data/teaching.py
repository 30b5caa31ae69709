"""The teaching world and the shipped checkpoints in a checkout of this repository: where they are, whether a world on
disk is one of the current generator's, and the world generated when it is missing.

Used by ``isvos-lite demo``, the notebooks (through :mod:`isvos_lite.course`) and the scripts. ``ISVOS_LITE_SMALL=1``
(set by CI) selects a tiny world.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from isvos_lite.data.export import WorldSizes, generate_world
from isvos_lite.data.world import WorldConfig

__all__ = ["small_mode", "repo_root", "ensure_teaching_world", "world_version_problem", "teaching_checkpoint",
           "CHECKPOINTS", "WORLD_V2_SPLIT", "WORLD_V2_KEYS"]

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
    here = Path(__file__).resolve().parents[2]               # isvos_lite/data/teaching.py -> the checkout
    if (here / "pyproject.toml").exists():
        return here
    for folder in [Path.cwd(), *Path.cwd().parents]:
        if (folder / "pyproject.toml").exists() and (folder / "isvos_lite").is_dir():
            return folder
    return Path.cwd()


def world_version_problem(root: str | os.PathLike) -> str | None:
    """Why the DAVIS-layout world at ``root`` is not a teaching world of the current (v2) generator, or None.

    A v1 world (the old ``distractor`` split, another frame size, no held-out families) has no
    ``ImageSets/2017/lookalike.txt`` and a ``world.json`` without the v2 keys (``heldout_shapes``,
    ``texture_families``). A folder without ``world.json`` (real DAVIS, say) is not checked for the keys.
    """
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
