"""The figure check while notebooks run under nbval: a pytest plugin (``notebooks/conftest.py`` loads it).

Before a notebook's first cell runs, the plugin starts a :class:`~isvos_lite.viz.figure_check.FigureTracker` in the
notebook's kernel; after every cell that ran without error, it asks the kernel (as a ``user_expressions`` entry of
an empty execute request, the Jupyter messaging protocol's way to evaluate an expression:
https://jupyter-client.readthedocs.io/en/stable/messaging.html#execute) for the problems of every figure the cell
showed (:func:`~isvos_lite.viz.figure_check.figure_problems`: data outside the axes limits, empty axes,
text too small to read projected), and fails that cell's test with them.

``ISVOS_LITE_FIGURE_CHECK`` chooses: ``fail`` (default), ``warn`` (a pytest warning instead of a failure) or
``off``. Use it elsewhere with ``pytest -p isvos_lite.viz.nbval_figures --nbval-lax NOTEBOOK.ipynb``.
"""

from __future__ import annotations

import ast
import json
import os
import warnings

import pytest

ENV = "ISVOS_LITE_FIGURE_CHECK"
_SETUP = "import isvos_lite.viz.figure_check as _isvos_figure_check; _isvos_figure_check.install_tracker()"
_REPORT = "__import__('isvos_lite.viz.figure_check', fromlist=['_']).tracked_report_json()"
_TIMEOUT_S = 120


class FigureCheckWarning(UserWarning):
    """A notebook figure failed the figure check (``ISVOS_LITE_FIGURE_CHECK=warn``)."""


def _mode() -> str:
    mode = os.environ.get(ENV, "fail").strip().lower()
    if mode not in ("fail", "warn", "off"):
        raise pytest.UsageError(f"{ENV}={mode!r}: use 'fail' (default), 'warn' or 'off'")
    return mode


def _kernel_of(item):
    """The nbval kernel of a notebook-cell test item, or None for any other test."""
    parent = getattr(item, "parent", None)
    if type(item).__name__ != "IPyNbCell" or parent is None:
        return None
    return getattr(parent, "kernel", None)


def _evaluate(kernel, expression: str | None, code: str = "") -> str | None:
    """Run ``code`` in the kernel and return ``repr(expression)`` evaluated after it (None without an expression)."""
    expressions = {"value": expression} if expression else {}
    msg_id = kernel.kc.execute(code, silent=False, store_history=False, user_expressions=expressions,
                               allow_stdin=False, stop_on_error=False)
    while True:                                            # our reply on the shell channel
        reply = kernel.kc.get_shell_msg(timeout=_TIMEOUT_S)
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    kernel.await_idle(msg_id, _TIMEOUT_S)                  # and the end of its messages on iopub
    content = reply["content"]
    if content.get("status") != "ok":
        raise RuntimeError(f"figure check: the kernel could not run {code or expression!r}: "
                           f"{content.get('ename')}: {content.get('evalue')}")
    if not expression:
        return None
    value = content["user_expressions"]["value"]
    if value.get("status") != "ok":
        raise RuntimeError(f"figure check: {expression!r} failed in the kernel: {value.get('ename')}: "
                           f"{value.get('evalue')}")
    return value["data"]["text/plain"]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    kernel = _kernel_of(item)
    if kernel is None or _mode() == "off":
        return (yield)
    if not getattr(kernel, "_isvos_figure_check", False):
        _evaluate(kernel, None, _SETUP)
        kernel._isvos_figure_check = True
    result = yield                                         # the cell ran (an error propagates from here)
    problems = json.loads(ast.literal_eval(_evaluate(kernel, _REPORT)))
    if problems:
        message = (f"figure check: {len(problems)} problem(s) in the figures of cell {item.cell_num} "
                   f"(isvos_lite/viz/figure_check.py):\n  - " + "\n  - ".join(problems))
        if _mode() == "warn":
            warnings.warn(FigureCheckWarning(message))
        else:
            from nbval.plugin import NbCellError
            raise NbCellError(item.cell_num, message, item.cell.source)
    return result
