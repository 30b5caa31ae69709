"""Execute the course notebooks and export them to HTML, for lecturers (``make course-html``).

    python scripts/export_course.py --out course_html            # the real (default-size) run, ~1 h on 2 CPU cores
    ISVOS_LITE_SMALL=1 python scripts/export_course.py --out /tmp/course   # CI-sized, a few minutes

Each notebook is executed in a fresh kernel from the repository root; a failing notebook is reported and the
others still export. Writes ``<out>/NN_name.html`` and ``<out>/index.html`` with the run time of each notebook.
"""

from __future__ import annotations

import argparse
import html
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter
from nbconvert.preprocessors import ExecutePreprocessor
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="course_html", help="output folder (default: course_html)")
    parser.add_argument("--notebooks", nargs="*", default=None, help="only these notebooks (default: all)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell (default 1800)")
    args = parser.parse_args(argv)

    paths = [Path(p) for p in args.notebooks] if args.notebooks else sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        print("no notebooks found under notebooks/", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # static HTML has no live kernel: the explorers render as before (Output widgets driven by sliders), not as
    # ipympl canvases, whose clicking needs JupyterLab (isvos_lite.viz.widgets.clickable_canvas)
    os.environ.setdefault("ISVOS_LITE_EXPLORER", "sliders")
    exporter = HTMLExporter()
    rows, failed = [], []
    for path in tqdm(paths, desc="executing the course", unit="notebook"):
        nb = nbformat.read(path, as_version=4)
        start = time.time()
        error = None
        try:
            ExecutePreprocessor(timeout=args.timeout, kernel_name="python3").preprocess(nb, {"metadata": {"path": str(ROOT)}})
        except Exception as err:  # keep going: a lecturer still gets the other notebooks
            error = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            failed.append(path.name)
        seconds = time.time() - start
        body, _ = exporter.from_notebook_node(nb)
        target = out / (path.stem + ".html")
        with tempfile.NamedTemporaryFile("w", dir=out, delete=False, suffix=".tmp") as f:
            f.write(body)
        os.replace(f.name, target)
        rows.append((path.stem, seconds, error))
        tqdm.write(f"{path.name}: {seconds:.0f} s{' FAILED ' + error if error else ''}")
    items = "\n".join(
        f'<li><a href="{html.escape(n)}.html">{html.escape(n)}</a> — {s:.0f} s{" — <b>failed</b>: " + html.escape(e) if e else ""}</li>'
        for n, s, e in rows)
    (out / "index.html").write_text(f"<html><body><h1>isvos-lite course</h1><ul>{items}</ul></body></html>")
    print(f"wrote {len(rows)} notebooks to {out}/ (index.html); {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
