"""What a training run tells its user: a metrics log (JSON lines) and a loss-curve plot.

``<out>/metrics.jsonl`` gets one line per logged iteration, e.g.::

    {"stage": "main", "step": 120, "iteration": 720, "loss": 1.93, "loss_vos": 1.1, "loss_ce": 0.7, ...,
     "lr": 0.0005, "p": 1.0, "max_skip": 5, "sec_per_it": 1.8}

and one line per validation, ``{"stage": ..., "step": ..., "val_jf": 71.2, "val_j": ..., "val_f": ...}``.
``iteration`` counts through the whole recipe (the static stage's iterations, then the main stage's), so the
curves of the two stages join up.
On resume, lines after the resumed step are dropped first, so the log never holds two histories.
``<out>/loss_curve.png`` redraws the curves from the log (training losses, and validation J&F when present).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from isvos_lite.atomic import atomic_path, atomic_write_text

__all__ = ["MetricsLog", "plot_loss_curves"]


class MetricsLog:
    """Appends JSON lines to ``<out>/metrics.jsonl``; reads them back for the plot."""

    def __init__(self, out_dir: str | os.PathLike):
        self.path = Path(out_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def records(self) -> list[dict]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:       # a line cut short by a kill: skip it
                continue
        return out

    def truncate_after(self, iteration: int) -> None:
        """Drop records past ``iteration`` (the run resumes from there and will log them again)."""
        kept = [r for r in self.records() if r.get("iteration", 0) <= iteration]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))


def plot_loss_curves(records: list[dict], path: str | os.PathLike) -> Path | None:
    """Draw total / VOS / IS losses (and validation J&F) against the run's iteration; returns the PNG path."""
    train = [r for r in records if "loss" in r]
    val = [r for r in records if "val_jf" in r]
    ap = [r for r in records if "val_ap" in r]
    qe = [r for r in records if "qe_saturated" in r]
    if not train:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    panels = 1 + bool(val or ap) + bool(qe)
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4), squeeze=False)
    ax = axes[0, 0]
    x = [r["iteration"] for r in train]
    for key, label in (("loss", "total"), ("loss_vos", "VOS (CE + dice)"), ("loss_is", "IS (unweighted)"),
                       ("loss_qe_align", "EKE map-to-mask")):
        if any(key in r for r in train):
            ax.plot(x, [r.get(key, float("nan")) for r in train], label=label)
    for r_prev, r in zip(train, train[1:]):
        if r["stage"] != r_prev["stage"]:
            ax.axvline(r["iteration"], color="gray", linestyle=":", linewidth=1)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.set_title("training losses")
    ax.legend()
    if val or ap:
        ax = axes[0, 1]
        if val:
            ax.plot([r["iteration"] for r in val], [r["val_jf"] for r in val], marker="o", label="J&F")
            ax.plot([r["iteration"] for r in val], [r["val_j"] for r in val], linestyle="--", label="J")
            ax.plot([r["iteration"] for r in val], [r["val_f"] for r in val], linestyle="--", label="F")
        if ap:
            ax.plot([r["iteration"] for r in ap], [r["val_ap"] for r in ap], marker="s", label="instance mask AP")
            ax.plot([r["iteration"] for r in ap], [r["val_agnostic_ap"] for r in ap], marker="^",
                    label="class-agnostic AP")
        ax.set_xlabel("iteration")
        ax.set_ylabel("score (%)")
        ax.set_title("validation")
        ax.legend()
    if qe:
        ax = axes[0, -1]
        xs = [r["iteration"] for r in qe]
        ax.plot(xs, [r["qe_saturated"] for r in qe], marker="o", label="saturated fraction (want low)")
        ax.plot(xs, [r["qe_map_correlation"] for r in qe], marker="o", label="map-map correlation (want low)")
        ax.plot(xs, [r["qe_mask_agreement"] for r in qe], marker="o", label="map-own-mask agreement (want high)")
        if all("qe_key_change" in r for r in qe):
            ax.plot(xs, [r["qe_key_change"] for r in qe], marker="o", label="key change, maps flattened (want high)")
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("iteration")
        ax.set_title("query-enhancement health (EKE maps)")
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)
    return path
