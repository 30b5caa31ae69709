"""The package's layers: config -> model -> inference -> data -> eval -> train -> viz -> commands/cli -> course.

A module imports only from its own layer and the layers below it. The contract lives in ``pyproject.toml``
(``[tool.importlinter]``); ``lint-imports`` (import-linter, a dev dependency) checks every import of the package,
function-level ones included, and names the offending line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:          # Python 3.10: pytest brings tomli
    import tomli as tomllib

import pytest

REPO = Path(__file__).resolve().parent.parent
ORDER = ["isvos_lite.course", "isvos_lite.commands | isvos_lite.cli", "isvos_lite.viz", "isvos_lite.train",
         "isvos_lite.eval", "isvos_lite.data", "isvos_lite.inference", "isvos_lite.model", "isvos_lite.config"]


def lint_imports() -> str:
    beside = Path(sys.executable).parent / "lint-imports"
    found = str(beside) if beside.exists() else shutil.which("lint-imports")
    if found is None:
        pytest.fail("lint-imports is missing: install the dev extra (pip install -e \".[dev]\", which `make test` does)")
    return found


def run_lint(config: Path, cwd: Path, extra_path: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(extra_path), env.get("PYTHONPATH", "")])
    return subprocess.run([lint_imports(), "--no-cache", "--no-logo", str(config)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_contract_names_every_layer_in_order():
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    assert config["root_package"] == "isvos_lite"
    (contract,) = [c for c in config["contracts"] if c["type"] == "layers"]
    assert contract["layers"] == ORDER


def test_the_package_keeps_its_layers():
    result = run_lint(REPO / "pyproject.toml", REPO)
    assert result.returncode == 0, f"an import goes up a layer:\n{result.stdout}\n{result.stderr}"
    assert "1 kept, 0 broken" in result.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    """The checker itself: a lower layer importing a higher one fails, and the message names the import."""
    package = tmp_path / "layered"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "high.py").write_text("from layered import low\n")
    (package / "low.py").write_text("def helper():\n    from layered import high   # upward, hidden in a function\n")
    config = tmp_path / "contracts.toml"
    config.write_text('[tool.importlinter]\nroot_package = "layered"\n\n[[tool.importlinter.contracts]]\n'
                      'name = "high over low"\ntype = "layers"\nlayers = ["layered.high", "layered.low"]\n')
    result = run_lint(config, tmp_path, extra_path=tmp_path)
    assert result.returncode != 0
    assert "layered.low -> layered.high" in result.stdout
