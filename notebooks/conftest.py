"""pytest configuration of the notebook tests: every figure a notebook cell draws is checked while nbval runs it
(data inside the axes limits, no empty axes, text readable when projected; see isvos_lite/viz/figure_check.py)."""

from isvos_lite.viz.nbval_figures import pytest_runtest_call  # noqa: F401  (a pytest hook)
