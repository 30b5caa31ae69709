"""Notebooks are committed without outputs — checked on what git holds, not on the working copy.

A student who ran the course in JupyterLab has notebooks full of outputs in the working copy; that must not make the
tests fail. What must be clean is the version git commits: the staged blob (``git show :path``, equal to HEAD unless
something was staged). ``make install`` sets up nbstripout as a git filter, so ``git add`` strips outputs on the way in.
Outside a git checkout (a release archive) the files themselves are checked.
"""

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def _git(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(REPO), *args], input=stdin, capture_output=True)


def _in_git_checkout() -> bool:
    try:
        return _git("rev-parse", "--is-inside-work-tree").returncode == 0
    except FileNotFoundError:                                   # no git program
        return False


def committed_text(notebook: Path) -> bytes:
    """The notebook as git would commit it (the index), or the file itself when git does not track it."""
    relative = notebook.relative_to(REPO).as_posix()
    if _in_git_checkout():
        shown = _git("show", f":{relative}")
        if shown.returncode == 0:
            return shown.stdout
    return notebook.read_bytes()


def notebooks_nbstripout_would_change(texts: dict[str, bytes], folder: Path) -> list[str]:
    """Names of the notebooks (name -> text) that ``nbstripout --verify`` would change (one process for all)."""
    import sys
    for name, text in texts.items():
        (folder / name).write_bytes(text)
    verify = subprocess.run([sys.executable, "-m", "nbstripout", "--verify", *sorted(texts)], cwd=folder,
                            capture_output=True, text=True)
    if verify.returncode == 0:
        return []
    changed = [name for name in texts if name in verify.stdout + verify.stderr]
    assert changed, f"nbstripout --verify failed without naming a notebook:\n{verify.stdout}{verify.stderr}"
    return changed


def test_notebooks_committed_without_outputs(tmp_path):
    pytest.importorskip("nbstripout")
    assert len(NOTEBOOKS) >= 10, f"expected the ten course notebooks under {REPO / 'notebooks'}"
    changed = notebooks_nbstripout_would_change({nb.name: committed_text(nb) for nb in NOTEBOOKS}, tmp_path)
    assert not changed, (
        f"the version git commits of {', '.join(changed)} holds outputs or execution counts. Strip them "
        f"(`.venv/bin/nbstripout notebooks/NAME.ipynb`), or run `make install` once so that the nbstripout git "
        f"filter strips notebooks on `git add`")


def test_the_check_sees_outputs(tmp_path):
    # the checker itself: a notebook with one output is caught, a clean one is not
    pytest.importorskip("nbstripout")
    import json
    clean = committed_text(NOTEBOOKS[0])
    notebook = json.loads(clean)
    code_cell = next(cell for cell in notebook["cells"] if cell["cell_type"] == "code")
    code_cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["ran\n"]}]
    code_cell["execution_count"] = 1
    dirty = json.dumps(notebook, indent=1, ensure_ascii=False).encode() + b"\n"
    assert notebooks_nbstripout_would_change({"clean.ipynb": clean, "dirty.ipynb": dirty}, tmp_path) == ["dirty.ipynb"]
