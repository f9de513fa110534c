# lrt — two commands do all set-up on a fresh machine:
#   make book   create .venv, install, build the HTML book into _build/html (warnings are errors)
#   make test   create .venv, install, run pytest (unit, property, doctest, CLI) and strict nbval
#   make test-portable   the same tests under another arithmetic (torch's and MKL's portable kernels)
# Other targets: make execute (re-run every notebook in place), make lab, make ledger, make figures.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MATHJAX_VERSION := 3.2.2
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

.PHONY: all venv book test test-portable pytest nbval execute lab ledger figures clean

all: test

venv: $(STAMP)

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

$(MATHJAX)/tex-mml-chtml.js:
	@command -v npm >/dev/null || { echo "make book: npm is needed once to fetch MathJax $(MATHJAX_VERSION) (served locally, no CDN)"; exit 1; }
	rm -rf _build/mathjax-npm && mkdir -p _build/mathjax-npm $(MATHJAX)
	cd _build/mathjax-npm && npm install --silent --no-audit --no-fund mathjax@$(MATHJAX_VERSION)
	cp -r _build/mathjax-npm/node_modules/mathjax/es5/. $(MATHJAX)/
	cp _build/mathjax-npm/node_modules/mathjax/LICENSE $(MATHJAX)/

book: $(STAMP) $(MATHJAX)/tex-mml-chtml.js
	$(VENV)/bin/jupyter-book build . -W -n --keep-going
	$(PY) -m tests.check_html _build/html
	@echo "The book is in _build/html/index.html"

test: pytest nbval

# Another CPU sums in another order and flips the last bits of float64 results. Torch's non-vectorised
# kernels and MKL's portable code path do the same on this machine, so CI checks that every printed
# number and every comparison survives such a change. Both variables are read at process start, so they
# reach the notebook kernels that nbval starts too.
test-portable: export ATEN_CPU_CAPABILITY := default
test-portable: export MKL_CBWR := COMPATIBLE
test-portable: pytest nbval

pytest: $(STAMP)
	$(PY) -m pytest -p no:cacheprovider tests

nbval: $(STAMP)
	$(PY) -m pytest -p no:cacheprovider --nbval --nbval-current-env \
	  --nbval-sanitize-with tests/nbval_sanitize.cfg -o norecursedirs="_build .* node_modules" book

execute: $(STAMP)
	$(PY) -m lrt.book.execute $(NOTEBOOKS)

lab: $(STAMP)
	$(PY) -m pip install --quiet $(JUPYTERLAB)
	$(VENV)/bin/jupyter lab book

ledger: $(STAMP)
	$(PY) -m lrt ledger

figures: $(STAMP)
	$(PY) -m lrt figure --all --out-dir figures

clean:
	rm -rf _build figures
