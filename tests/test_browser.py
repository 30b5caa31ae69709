"""The one real-browser test: the affinity explorer of notebook 04 in JupyterLab, driven by headless Chromium.

Run it alone with ``pytest -m browser tests/test_browser.py`` (``make test-browser``). It

1. starts JupyterLab on 127.0.0.1 (a free port, no token; ``tests/jupyter_server_test_config.py``) with
   ``ISVOS_LITE_SMALL=1`` so the notebook runs at CI size;
2. opens ``notebooks/04_memory_and_affinity.ipynb`` in Debian's Chromium (``/usr/bin/chromium``) through
   Playwright's Python API - no browser is ever downloaded - and runs all cells;
3. waits for the explorer (the last cell; an ipympl canvas, since the kernel has ipympl), checks that no widget
   failed to render (no "Error displaying widget", no ipympl "state_change" error), moves the "query x" slider with
   the keyboard, types a new "query y", then **clicks** a pixel of the query frame in the figure, and checks each
   time that the rendered figure changed (the canvas's pixels differ) and, after the click, that the sliders moved
   to the clicked pixel;
4. saves screenshots to ``screenshots/`` (git-ignored) and the explorer's picture to
   ``docs/img/affinity_explorer.png`` for the README when ISVOS_LITE_UPDATE_DOCS=1;
5. shuts the server down through its API and, if needed, ends it by its PID.

Skipped, with the reason, when Chromium, Playwright or JupyterLab is missing (``.ci/run`` installs Chromium with
``apt-get install chromium``). The server's root is a temporary folder holding a copy of the notebook, so
JupyterLab's autosave and checkpoints never write into the repository.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = "notebooks/04_memory_and_affinity.ipynb"
CHROMIUM = Path("/usr/bin/chromium")
SERVER_CONFIG = Path(__file__).resolve().parent / "jupyter_server_test_config.py"
SCREENSHOTS = REPO / "screenshots"
README_IMAGE = REPO / "docs" / "img" / "affinity_explorer.png"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

SERVER_START_S = 90        # JupyterLab answers after ~10 s on 2 cores; generous for a loaded CI machine
NOTEBOOK_RUN_S = 240       # Run All of notebook 04 in small mode takes ~30-60 s on 2 cores
REDRAW_S = 60              # one explorer redraw: well under a second, but the kernel may still be busy

# The notebook's kernel is ready when the session of the current widget reports 'idle' (the status-bar text
# can say idle before the kernel exists).
KERNEL_IDLE_JS = (
    "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
    " const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;"
    " return !!k && k.status === 'idle'; }")
# Fire and forget: returning the command's promise from evaluate() can stall the page.
RUN_ALL_JS = "() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }"
# The explorer's figure is an ipympl canvas widget (the only one of the notebook): its first <canvas> holds the image.
EXPLORER_CANVAS = ".jupyter-matplotlib-canvas-div canvas"
# A cell that raised shows its traceback in an error output; Run All then stops before the explorer.
FAILED_CELL = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']:has(.ansi-red-fg)"
NOTEBOOK_DONE_JS = (f"() => !!document.querySelector({EXPLORER_CANVAS!r})"
                    f" || !!document.querySelector({FAILED_CELL!r})")
# What the canvas shows, as a data: URL (it changes when the kernel sends a new image and the canvas paints it).
CANVAS_PIXELS_JS = f"() => {{ const c = document.querySelector({EXPLORER_CANVAS!r}); return c ? c.toDataURL() : ''; }}"
CANVAS_CHANGED_JS = (f"(before) => {{ const c = document.querySelector({EXPLORER_CANVAS!r});"
                     " return !!c && c.width > 0 && c.toDataURL() !== before; }")
# A widget that failed to render (e.g. an ipympl canvas without its toolbar widget) shows one of these texts.
WIDGET_ERRORS = ("Error displaying widget", "state_change", "Cannot read properties of null")
# JupyterLab asks once whether to fetch Jupyter news; the toast would cover the explorer in the screenshots.
NEWS_TOAST_NO = ".jp-toast-button:has-text('No')"


def _missing_requirement() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing: install Debian's browser with `apt-get install -y chromium` (never a download)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright (python) is not installed: pip install -e '.[ui]'"
    try:
        import jupyterlab  # noqa: F401
        import ipywidgets  # noqa: F401
    except ImportError:
        return "jupyterlab / ipywidgets are not installed: pip install -e '.[notebooks]'"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LabServer:
    """A JupyterLab process on 127.0.0.1:<port>; started and stopped by this test only, by its PID."""

    def __init__(self, port: int, root: Path, log_path: Path):
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        env = dict(os.environ)
        env.pop("MPLBACKEND", None)                 # the kernel must use the inline backend, not Agg
        env.update(ISVOS_LITE_SMALL="1", LAB_PORT=str(port), LAB_ROOT=str(root),
                   JUPYTER_RUNTIME_DIR=tempfile.mkdtemp(prefix="isvos-lab-runtime-"))
        self._log = open(log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--config", str(SERVER_CONFIG)],
            cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def log_tail(self, chars: int = 3000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]

    def wait_until_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with code {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/status", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"JupyterLab did not answer on {self.url} within {timeout_s:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Shut down through the API (which also stops the kernels), then by PID if it is still running."""
        if self.process.poll() is None:
            try:
                request = urllib.request.Request(f"{self.url}/api/shutdown", method="POST")
                urllib.request.urlopen(request, timeout=5).close()
                self.process.wait(timeout=20)
            except (urllib.error.URLError, ConnectionError, TimeoutError, subprocess.TimeoutExpired):
                pass
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._log.close()


@pytest.fixture
def lab_server(tmp_path):
    reason = _missing_requirement()
    if reason:
        pytest.skip(reason)
    # Serve a copy of the notebook: JupyterLab's autosave and checkpoints then never touch the committed file
    # (which must stay without outputs). The notebook finds the repository through the installed package.
    root = tmp_path / "lab"
    (root / Path(NOTEBOOK).parent).mkdir(parents=True)
    shutil.copyfile(REPO / NOTEBOOK, root / NOTEBOOK)
    server = LabServer(_free_port(), root, tmp_path / "jupyterlab.log")
    try:
        server.wait_until_ready(SERVER_START_S)
        yield server
    finally:
        server.stop()


def _slider(page, description: str):
    """The ipywidgets IntSlider labelled ``description`` (its container holds the label, handle and readout)."""
    return page.locator(".widget-slider").filter(has=page.locator(".widget-label", has_text=description)).last


def _wait_for_new_figure(page, before: str) -> str:
    page.wait_for_function(CANVAS_CHANGED_JS, arg=before, timeout=REDRAW_S * 1000)
    page.wait_for_function(KERNEL_IDLE_JS, timeout=REDRAW_S * 1000)       # the redraw (and any follow-up) is done
    page.wait_for_timeout(500)                                            # let the browser paint the last image
    return page.evaluate(CANVAS_PIXELS_JS)


def _readouts(x_slider, y_slider) -> tuple[int, int]:
    return int(x_slider.locator(".widget-readout").inner_text()), int(y_slider.locator(".widget-readout").inner_text())


def _click_in_query_frame(page, canvas, x_slider, y_slider) -> tuple[tuple[int, int], tuple[int, int]]:
    """Click points of the figure until one lands in the query frame (the sliders then jump to the clicked pixel).

    The query frame is one panel of the explorer's grid; where it sits depends on the number of memory frames, so
    the test tries a grid of points, bottom rows first (the query frame is the last panel). A click elsewhere
    changes nothing. Returns (sliders before, sliders after)."""
    before = _readouts(x_slider, y_slider)
    box = canvas.bounding_box()
    for fy in (0.85, 0.7, 0.55, 0.4, 0.25):
        for fx in (0.15, 0.3, 0.45, 0.6, 0.75, 0.9):
            page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
            page.wait_for_timeout(400)
            page.wait_for_function(KERNEL_IDLE_JS, timeout=REDRAW_S * 1000)
            after = _readouts(x_slider, y_slider)
            if after != before:
                return before, after
    raise AssertionError(f"no click on the explorer's figure moved the query pixel (sliders stayed at {before})")


def _dismiss_news_toast(page) -> None:
    toast_button = page.locator(NEWS_TOAST_NO)
    if toast_button.count():
        toast_button.first.click()


def test_affinity_explorer_reacts_in_jupyterlab(lab_server):
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)
            page.goto(f"{lab_server.url}/lab/tree/{NOTEBOOK}?reset")               # ?reset: no restored tabs
            page.wait_for_selector(".jp-Notebook", timeout=SERVER_START_S * 1000)
            page.wait_for_function(KERNEL_IDLE_JS, timeout=SERVER_START_S * 1000)
            page.evaluate(RUN_ALL_JS)

            # the last cell displays the explorer: sliders above an ipympl canvas holding the figure
            page.wait_for_function(NOTEBOOK_DONE_JS, timeout=NOTEBOOK_RUN_S * 1000)
            failed = page.locator(FAILED_CELL)
            assert failed.count() == 0, f"a notebook cell failed:\n{failed.first.inner_text()[-2000:]}"
            page.wait_for_function(KERNEL_IDLE_JS, timeout=NOTEBOOK_RUN_S * 1000)
            _dismiss_news_toast(page)
            page.wait_for_function(CANVAS_CHANGED_JS, arg="", timeout=REDRAW_S * 1000)     # the first image is there
            page_text = page.locator(".jp-Notebook").inner_text()
            for error in WIDGET_ERRORS:
                assert error not in page_text, f"a widget failed to render in JupyterLab: {error!r} on the page"
            canvas = page.locator(EXPLORER_CANVAS).first
            explorer = page.locator(".widget-vbox").filter(has=canvas).last
            explorer.scroll_into_view_if_needed()
            x_slider, y_slider = _slider(page, "query x"), _slider(page, "query y")
            x_before = int(x_slider.locator(".widget-readout").inner_text())
            first_src = page.evaluate(CANVAS_PIXELS_JS)
            assert first_src.startswith("data:image/png")
            page.screenshot(path=str(SCREENSHOTS / "affinity_explorer_before.png"))

            # 1) keyboard: three steps on the query x slider (right, or left at the right edge)
            x_handle = x_slider.locator(".noUi-handle")
            step, key = (3, "ArrowRight") if x_before + 3 <= int(float(x_handle.get_attribute("aria-valuemax"))) \
                else (-3, "ArrowLeft")
            x_handle.focus()
            for _ in range(abs(step)):
                page.keyboard.press(key)
            page.wait_for_function(
                "([el, want]) => el.innerText.trim() === want",
                arg=[x_slider.locator(".widget-readout").element_handle(), str(x_before + step)])
            second_src = _wait_for_new_figure(page, first_src)

            # 2) another query pixel: type a new y into the slider's editable readout
            y_readout = y_slider.locator(".widget-readout")
            y_before = int(y_readout.inner_text())
            y_new = y_before // 3 if y_before > 0 else 1
            y_readout.click()
            page.keyboard.press("Control+A")
            page.keyboard.type(str(y_new))
            page.keyboard.press("Enter")
            page.wait_for_function("([el, want]) => el.innerText.trim() === want",
                                   arg=[y_readout.element_handle(), str(y_new)])
            third_src = _wait_for_new_figure(page, second_src)

            # 3) click a pixel of the query frame in the figure: the sliders follow and the figure is redrawn
            explorer.scroll_into_view_if_needed()
            canvas.scroll_into_view_if_needed()             # the status bar covers the bottom rows of the viewport
            sliders_before, sliders_after = _click_in_query_frame(page, canvas, x_slider, y_slider)
            fourth_src = _wait_for_new_figure(page, third_src)

            _dismiss_news_toast(page)
            explorer.scroll_into_view_if_needed()
            page.screenshot(path=str(SCREENSHOTS / "affinity_explorer_after.png"))
            explorer.screenshot(path=str(SCREENSHOTS / "affinity_explorer_widget.png"))
        finally:
            browser.close()

    assert sliders_after != sliders_before, "the click did not move the query pixel"
    assert len({first_src, second_src, third_src}) == 3, "the explorer's figure did not change with the sliders"
    assert fourth_src != third_src, "the explorer's figure did not change after the click"
    if os.environ.get("ISVOS_LITE_UPDATE_DOCS") == "1":   # refresh the README's picture only when asked
        README_IMAGE.parent.mkdir(parents=True, exist_ok=True)
        temporary = README_IMAGE.with_name(f".{README_IMAGE.name}.tmp")
        shutil.copyfile(SCREENSHOTS / "affinity_explorer_widget.png", temporary)
        os.replace(temporary, README_IMAGE)                                      # atomic: never a half-written PNG
