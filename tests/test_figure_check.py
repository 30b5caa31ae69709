"""The figure check (isvos_lite.viz.figure_check) and its nbval plugin: figures whose data lie outside their axes,
empty axes and text too small to read projected fail; the course's own figures pass."""

import io
import os
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import nbformat
import numpy as np
import pytest
from matplotlib.figure import Figure

from isvos_lite import viz
from isvos_lite.viz.figure_check import (DISPLAY_WIDTH_IN, MIN_FONT_PT, FigureTracker, assert_figure_ok,
                                         figure_problems)


def _curves(seed=0):
    """Per-frame scores of two objects as the scorer gives them: fractions in [0, 1]."""
    rng = np.random.default_rng(seed)
    return {k: {"J": rng.uniform(0.4, 0.9, 10), "F": rng.uniform(0.4, 0.9, 10), "frames": np.arange(1, 11)}
            for k in (1, 2)}


def _old_notebook_07_curves():
    """Notebook 07's per-frame curves as they were: plot_jf_curves draws percent, then y limits set for fractions."""
    fig, axes = viz.new_figure(1, 3, panel_size=(3.3, 2.5))
    for seed, ax in enumerate(axes.flat[:2]):
        viz.plot_jf_curves(_curves(seed), ax=ax, title=f"val-00{seed}")
        ax.set_ylim(-0.02, 1.02)
    axes.flat[2].set_axis_off()
    return fig


def _fixed_notebook_07_curves():
    fig, axes = viz.new_figure(1, 3, panel_size=(3.3, 2.5))
    for seed, ax in enumerate(axes.flat[:2]):
        viz.plot_jf_curves(_curves(seed), ax=ax, title=f"val-00{seed}")
    axes.flat[2].set_axis_off()
    return fig


def test_the_old_notebook_07_curves_fail_and_the_fixed_ones_pass():
    problems = figure_problems(_old_notebook_07_curves())
    outside = [p for p in problems if p.startswith("data outside the axes limits")]
    assert len(outside) == 4 and all("100%" in p and "y -0.02..1.02" in p for p in outside)   # 2 panels x 2 objects
    assert figure_problems(_fixed_notebook_07_curves()) == []
    with pytest.raises(AssertionError, match="data outside the axes limits"):
        assert_figure_ok(_old_notebook_07_curves())


def test_a_curve_cut_at_its_ends_passes_but_one_mostly_outside_fails():
    fig = Figure(figsize=(6, 3))
    ax = fig.subplots()
    ax.plot(np.arange(10), np.arange(10))
    ax.set_xlim(2, 9)                                    # 2 of 10 points cut away: a zoom
    assert figure_problems(fig) == []
    ax.set_xlim(7, 9)                                    # 7 of 10 points outside
    assert any("70% of the 10 points" in p for p in figure_problems(fig))
    ax.set_xlim(2, 9)
    ax.axhline(20)                                       # a reference line above the data's limits: invisible
    ax.set_ylim(0, 10)
    assert any("Line2D" in p and "100% of the 2 points" in p for p in figure_problems(fig))


def test_empty_axes_fail_unless_switched_off():
    fig = Figure(figsize=(6, 3))
    axes = fig.subplots(1, 2)
    axes[0].imshow(np.zeros((4, 4)))
    problems = figure_problems(fig)
    assert len(problems) == 1 and problems[0].startswith("empty axes: axes 1")
    axes[1].set_axis_off()
    assert figure_problems(fig) == []


def test_text_is_judged_at_the_width_the_figure_is_shown():
    def labelled(width_in, size):
        fig = Figure(figsize=(width_in, 3))
        ax = fig.subplots()
        ax.plot([0, 1], [0, 1])
        ax.set_title("a title", fontsize=size)
        ax.set_xlabel("x", fontsize=size)
        ax.tick_params(labelsize=size)
        return fig

    assert figure_problems(labelled(8, MIN_FONT_PT)) == []
    narrow_small = figure_problems(labelled(8, MIN_FONT_PT - 1))
    assert {p.split(" '")[0] for p in narrow_small if not p.startswith("...")} == {
        "text too small to read projected: title", "text too small to read projected: axis label",
        "text too small to read projected: tick label"}
    wide = 2 * DISPLAY_WIDTH_IN                          # shown at half its size
    assert figure_problems(labelled(wide, 2 * MIN_FONT_PT)) == []
    assert any("when shown 10 inches wide" in p for p in figure_problems(labelled(wide, 12)))


def test_explorer_and_overlay_figures_pass(tmp_path):
    frame = np.full((96, 160, 3), 90, np.uint8)
    mask = np.zeros((96, 160), np.uint8)
    mask[20:60, 30:90] = 1
    assert figure_problems(viz.compare_masks(frame, mask, mask)) == []
    assert figure_problems(viz.show_frames([frame] * 3, [mask] * 3)) == []
    rows = np.full((2, 6, 10), 1e-3)
    rows[0, 2, 3] = 1.0
    figure = viz.plot_affinity([frame] * 2, rows / rows.sum(), frame, (50, 40), top_k=3, ncols=3, scale="log",
                               memory_masks=[mask, mask], query_mask=mask)
    assert figure_problems(figure) == []


def test_tracker_checks_shown_figures_not_saved_ones(tmp_path):
    tracker = FigureTracker().install()
    try:
        saved = _old_notebook_07_curves()
        saved.savefig(tmp_path / "curves.png")           # written to a file: not shown in the notebook
        assert tracker.report() == []
        shown = _old_notebook_07_curves()
        shown.savefig(io.BytesIO(), format="png")        # what IPython's inline backend does to display a figure
        report = tracker.report()
        assert len(report) == 4 and all("data outside the axes limits" in line for line in report)
        assert tracker.report() == []                    # each figure is reported once
    finally:
        tracker.uninstall()
    assert FigureTracker.active() is None


def _notebook(path, code):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell("%matplotlib inline\nimport numpy as np\nfrom isvos_lite import viz"),
                      nbformat.v4.new_code_cell(code)]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)


CURVES = """rng = np.random.default_rng(0)
curves = {k: {"J": rng.uniform(0.4, 0.9, 10), "F": rng.uniform(0.4, 0.9, 10)} for k in (1, 2)}
fig, axes = viz.new_figure(1, 2, panel_size=(3.3, 2.5))
for ax in axes.flat:
    viz.plot_jf_curves(curves, ax=ax, title="val-000")
"""


@pytest.mark.slow
def test_nbval_plugin_fails_the_cell_that_shows_the_broken_figure(tmp_path):
    """The plugin as `make test` runs it (notebooks/conftest.py loads it): the old notebook 07 cell fails, the fix
    passes. Two Jupyter kernels start, a few seconds each."""
    _notebook(tmp_path / "broken.ipynb", CURVES + "    ax.set_ylim(-0.02, 1.02)\nfig")
    _notebook(tmp_path / "fixed.ipynb", CURVES + "fig")
    env = {**os.environ, "MPLBACKEND": "Agg", "ISVOS_LITE_FIGURE_CHECK": "fail"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "isvos_lite.viz.nbval_figures", "-p", "no:randomly",
         "-p", "no:cacheprovider", "--nbval-lax", "--nbval-current-env", "--rootdir", str(tmp_path),
         "broken.ipynb", "fixed.ipynb"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "1 failed, 3 passed" in output, output
    assert "broken.ipynb::Cell 1" in output and "figure check: 4 problem(s)" in output, output
    assert "data outside the axes limits" in output and "y -0.02..1.02" in output, output
