# lrt — two commands do all set-up on a fresh machine (Python 3.11 and make; nothing else):
#   make book   create .venv, install, build the HTML book into _build/html (warnings are errors)
#   make test   create .venv, install, run pytest (unit, property, doctest, CLI) and strict nbval
# `make help` lists every target.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# MathJax 3.2.2 comes from a pinned wheel (django-static-mathjax, see requirements.txt) and is served
# from the book itself: no npm, no CDN.
MATHJAX := _mathjax_extra/_static/mathjax
JUPYTERLAB := jupyterlab==4.6.6
NOTEBOOKS := $(shell find book -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*' | sort)
# The book's outputs are exact: one thread, no stray config, the repository on the path.
export PYTHONPATH := $(CURDIR)
export OMP_NUM_THREADS := 1
export MKL_NUM_THREADS := 1
export OPENBLAS_NUM_THREADS := 1
export PYTHONHASHSEED := 0
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: all help venv book student test test-portable test-browser pytest nbval execute lab ledger figures clean

all: test

## help: list the targets
help:
	@sed -n 's/^## //p' $(MAKEFILE_LIST)

## venv: create .venv and install the pinned requirements (every other target does this first)
venv: $(STAMP)

# The pinned wheels (torch 2.13.0 among them) exist for Python 3.11 only: check the interpreter first.
$(STAMP): requirements.txt
	@py=$$(test -x $(PY) && echo $(PY) || echo $(PYTHON)); \
	 v=$$($$py -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null); \
	 test "$$v" = 3.11 || { echo "make: Python 3.11 is needed, but $$py is $${v:-not a working Python}; run make PYTHON=/path/to/python3.11 (and rm -rf $(VENV) if it was made by another Python)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

$(MATHJAX)/tex-mml-chtml.js: $(STAMP)
	rm -rf $(MATHJAX) && mkdir -p $(MATHJAX)
	src=$$($(PY) -c 'import mathjax, pathlib; print(pathlib.Path(mathjax.__file__).parent / "static" / "mathjax")') && \
	  cp -r "$$src/es5/." $(MATHJAX)/ && cp "$$src/LICENSE" $(MATHJAX)/

## book: build the HTML book (instructor edition, solutions included) into _build/html
book: $(STAMP) $(MATHJAX)/tex-mml-chtml.js
	$(VENV)/bin/jupyter-book build . -W -n --keep-going
	$(PY) -m tests.check_html _build/html
	@echo "The book is in _build/html/index.html"

## student: build the student edition (solutions removed) into _build/student/html and _build/student/notebooks
student: $(STAMP) $(MATHJAX)/tex-mml-chtml.js
	$(PY) book/_ext/student.py _build/student-src
	$(VENV)/bin/jupyter-book build _build/student-src -W -n --keep-going
	rm -rf _build/student && mkdir -p _build/student
	cp -r _build/student-src/_build/html _build/student/html
	mkdir -p _build/student/notebooks && cd _build/student-src && find book -name "*.ipynb" -not -path "*/_build/*" -exec cp --parents {} ../student/notebooks/ \;
	$(PY) -m tests.check_html _build/student/html
	$(PY) -m tests.check_student _build/student
	@echo "The student edition is in _build/student/html/index.html, its notebooks in _build/student/notebooks"

## test-browser: open every built page in headless Chromium, offline (needs make book and Debian's chromium)
test-browser: $(STAMP)
	test -f _build/html/index.html || $(MAKE) book
	@command -v chromium >/dev/null || { echo "make test-browser: needs Debian's chromium: apt-get install chromium (.ci/run installs it)"; exit 1; }
	$(PY) -m tests.browser_check _build/html --screenshots _build/screenshots --json _build/screenshots/report.json

## test: run pytest and strict nbval (what CI runs; needs no browser)
test: pytest nbval

## test-portable: the same tests under another arithmetic (torch's and MKL's portable kernels)
# Another CPU sums in another order and flips the last bits of float64 results. Torch's non-vectorised
# kernels and MKL's portable code path do the same on this machine, so CI checks that every printed
# number and every comparison survives such a change. Both variables are read at process start, so they
# reach the notebook kernels that nbval starts too.
test-portable: export ATEN_CPU_CAPABILITY := default
test-portable: export MKL_CBWR := COMPATIBLE
test-portable: pytest nbval

## pytest: unit, property, doctest and CLI tests
pytest: $(STAMP)
	$(PY) -m pytest -p no:cacheprovider tests

## nbval: re-execute every notebook and compare every output with the committed one
nbval: $(STAMP)
	$(PY) -m pytest -p no:cacheprovider --nbval --nbval-current-env \
	  --nbval-sanitize-with tests/nbval_sanitize.cfg -o norecursedirs="_build .* node_modules" book

## execute: re-execute notebooks in place (all, or NOTEBOOKS=path/to/chapter.ipynb)
execute: $(STAMP)
	$(PY) -m lrt.book.execute $(NOTEBOOKS)

## lab: install JupyterLab into .venv once and open book/ in it
lab: $(STAMP)
	$(PY) -m pip install --quiet $(JUPYTERLAB)
	$(VENV)/bin/jupyter lab book

## ledger: recompute every claim of the book (exit 1 if one fails)
ledger: $(STAMP)
	$(PY) -m lrt ledger

## figures: write every figure of the book into figures/
figures: $(STAMP)
	$(PY) -m lrt figure --all --out-dir figures

## clean: remove the built book and figures
clean:
	rm -rf _build figures _mathjax_extra
