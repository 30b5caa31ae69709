"""The README's Python code blocks run as written (in a folder laid out like the repository)."""

import re
from pathlib import Path

import pytest

from isvos_lite.data.export import WorldSizes, generate_world
from isvos_lite.data.world import WorldConfig

REPO = Path(__file__).resolve().parent.parent
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def readme_python_blocks() -> list[str]:
    return PYTHON_BLOCK.findall((REPO / "README.md").read_text(encoding="utf-8"))


def test_readme_has_python_blocks():
    assert readme_python_blocks(), "README.md has no ```python block: this test would check nothing"


@pytest.fixture(scope="module")
def readme_folder(tmp_path_factory):
    # the repository's layout: checkpoints/ (the shipped ones) and data/toy (a small teaching world)
    folder = tmp_path_factory.mktemp("readme")
    (folder / "checkpoints").symlink_to(REPO / "checkpoints", target_is_directory=True)
    config = WorldConfig(height=96, width=160, min_frames=6, max_frames=7, eval_min_frames=6, eval_max_frames=7,
                         max_objects=2)
    generate_world(folder / "data" / "toy", seed=0, config=config,
                   sizes=WorldSizes(train=1, val=1, lookalike=1, heldout=1, youtube_train=1, youtube_valid=1,
                                    coco_train=2, coco_val=2), progress=False)
    return folder


@pytest.mark.parametrize("index", range(len(readme_python_blocks())))
def test_readme_python_block_runs(index, readme_folder, monkeypatch):
    source = readme_python_blocks()[index]
    monkeypatch.chdir(readme_folder)
    exec(compile(source, f"README.md python block {index + 1}", "exec"), {"__name__": "__readme__"})
