# isvos-lite — every target creates/uses a local virtual environment (.venv) first.
#   make demo    the main job: segment a teaching-world video with the shipped checkpoint
#   make test    the whole test suite (unit, integration, notebooks in small mode, browser test if chromium exists)
# torch is installed only when none is importable: the venv sees the base interpreter's packages
# (--system-site-packages), so a CUDA build you already have is kept. Otherwise torch==$(TORCH_VERSION).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
EXTRAS ?= dev
STAMP := $(VENV)/.installed-$(EXTRAS)

.PHONY: install demo test test-fast test-notebooks test-browser course-html checkpoint benchmark bench-cutie clean-venv

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv --system-site-packages $(VENV)
	@$(PY) -c "import torch" 2>/dev/null && echo "using the installed torch $$($(PY) -c 'import torch; print(torch.__version__)')" \
	  || $(PY) -m pip install "torch==$(TORCH_VERSION)"
	$(PY) -m pip install -e ".[$(EXTRAS)]"
	@# notebooks are committed without outputs: in a git checkout, nbstripout strips them on `git add` (a git
	@# filter in .git/config and .git/info/attributes; `.venv/bin/nbstripout --uninstall` removes it)
	@if git rev-parse --is-inside-work-tree >/dev/null 2>&1 && $(VENV)/bin/nbstripout --help >/dev/null 2>&1; then \
	  $(VENV)/bin/nbstripout --install && echo "nbstripout git filter installed: notebooks are stripped on git add"; fi
	@touch $@

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/isvos-lite demo

# The README's test command. ISVOS_LITE_SMALL=1 shrinks notebooks and slow tests to CI size.
# Whether notebooks are committed without outputs is checked on what git holds (tests/test_notebooks_committed.py),
# so notebooks you ran and saved in JupyterLab do not fail the tests.
test: $(STAMP)
	ISVOS_LITE_SMALL=1 MPLBACKEND=Agg $(PY) -m pytest -q tests
	ISVOS_LITE_SMALL=1 MPLBACKEND=Agg $(PY) -m pytest -q --nbval-lax --nbval-current-env -p no:randomly notebooks

test-fast: $(STAMP)
	ISVOS_LITE_SMALL=1 MPLBACKEND=Agg $(PY) -m pytest -q -x tests -m "not slow and not browser"

test-notebooks: $(STAMP)
	ISVOS_LITE_SMALL=1 MPLBACKEND=Agg $(PY) -m pytest -q --nbval-lax --nbval-current-env notebooks

test-browser: $(STAMP)
	$(PY) -m pytest -q -m browser tests

# Execute the whole course (default sizes) and export it to HTML for lecturers.
course-html: $(STAMP)
	$(PY) scripts/export_course.py --out course_html

benchmark: $(STAMP)
	$(PY) scripts/speed_table.py --preset lite --height 480 --width 854 --frames 30 --objects 2
	$(VENV)/bin/isvos-lite benchmark --preset paper --height 480 --width 854 --frames 10 --objects 2

# isvos-lite next to Cutie-base on the same frames (Cutie from PyPI in its own .venv-cutie, made on first use)
bench-cutie: $(STAMP)
	$(PY) scripts/bench_cutie.py --preset paper --height 480 --width 854 --frames 12 --objects 2 --rounds 3

clean-venv:
	rm -rf $(VENV)
