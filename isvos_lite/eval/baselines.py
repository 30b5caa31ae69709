"""Trivial baselines every score should be read beside.

``copy the first mask``: the first frame's annotation (the mask a semi-supervised method is given)
is predicted unchanged for every frame. It scores well when objects barely move and badly when they
move, turn or change size, so a model's J&F means little until it is compared with it: a model that
does not beat it has learned nothing useful about the video (on real footage it can do worse than
doing nothing). It is scored by the same official DAVIS 2017 protocol as the model
(:func:`isvos_lite.eval.scorer.score_results`; https://github.com/davisvideochallenge/davis2017-evaluation).

Usage from a notebook or a script, on any DAVIS-layout split::

    from isvos_lite.eval.baselines import copy_first_mask_score
    result = copy_first_mask_score("data/toy", split="real")
    print(result.global_metrics["J&F-Mean"])
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from isvos_lite.eval.scorer import ScoreResult, _split_sequences, score_results

__all__ = ["write_copy_first_mask", "copy_first_mask_score"]


def write_copy_first_mask(davis_root: str | os.PathLike, results_dir: str | os.PathLike, split: str = "val",
                          year: int = 2017, sequences: list[str] | None = None, *, resolution: str = "480p") -> Path:
    """Write the copy-the-first-mask predictions: ``results_dir/<sequence>/<frame>.png`` for every annotated frame.

    Each file is a byte copy of the sequence's first annotation PNG. Returns ``results_dir``.
    """
    davis_root, results_dir = Path(davis_root), Path(results_dir)
    annotations = davis_root / "Annotations" / resolution
    if not annotations.is_dir():
        raise FileNotFoundError(f"annotation folder {annotations} not found; pass the DAVIS-layout folder (with "
                                "Annotations/ and ImageSets/) and the right resolution")
    names = _split_sequences(davis_root, split, year) if sequences is None else list(dict.fromkeys(sequences))
    for name in names:
        folder = annotations / name
        frames = sorted(p.name for p in folder.glob("*.png")) if folder.is_dir() else []
        if not frames:
            raise FileNotFoundError(f"sequence {name}: no annotation PNGs in {folder}")
        out = results_dir / name
        out.mkdir(parents=True, exist_ok=True)
        for frame in frames:
            shutil.copyfile(folder / frames[0], out / frame)
    return results_dir


def copy_first_mask_score(davis_root: str | os.PathLike, split: str = "val", year: int = 2017,
                          sequences: list[str] | None = None, *, resolution: str = "480p",
                          out_dir: str | os.PathLike | None = None, workers: int | None = None,
                          progress: bool = False) -> ScoreResult:
    """J&F of copying the first frame's mask to every frame, by the official protocol.

    The predictions go to a temporary folder that is removed afterwards; ``out_dir``, when given,
    receives the three CSVs of :func:`~isvos_lite.eval.scorer.score_results`.
    """
    with tempfile.TemporaryDirectory(prefix="isvos-copy-baseline-") as tmp:
        write_copy_first_mask(davis_root, tmp, split, year, sequences, resolution=resolution)
        return score_results(davis_root, tmp, split=split, year=year, out_dir=out_dir, workers=workers,
                             sequences=sequences, resolution=resolution, progress=progress)
