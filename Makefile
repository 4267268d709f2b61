# Two entry points that do all their own set-up on a fresh machine:
#   make demo   create .venv if missing, install, prepare real Fashion-MNIST images, run the
#               demo ablation study on the CPU, print its report
#   make test   create .venv if missing, install, run the test suite
#   make test-fast   the tests that launch no process and train nothing for long (<1 min)
#   make test-under-load   make test with two busy processes beside it (stress-ng --cpu 2)
#   make docs   build the documentation site into site/ (mkdocs build --strict: any warning fails)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ABLATE := $(VENV)/bin/ablate
STAMP := $(VENV)/.installed
# The demo writes its own database under runs/ and names it in ablate.toml (git-ignored), so
# `ablate status` and `ablate report` without --db show the demo afterwards; `make results`
# refreshes the committed results.db and the README tables and plots made from it.
DB ?= sqlite:///runs/demo.db
FASHION := data/fashion-mnist-6k

.PHONY: install data demo results test test-fast test-under-load lint docs clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,docs]'
	touch $(STAMP)

install: $(STAMP)

data: $(STAMP)
	$(ABLATE) data prepare fashion-mnist --out $(FASHION) --train-per-class 600 --val-per-class 300

demo: data
	mkdir -p runs
	if [ "$(DB)" != sqlite:///results.db ]; then printf 'db = "%s"\n' "$(DB)" > ablate.toml; fi
	$(ABLATE) run studies/fashion_mnist_tricks.yaml --db $(DB) --max-parallel 2 --html runs/demo.html
	$(ABLATE) report fashion_mnist_tricks --db $(DB)

results:
	$(MAKE) demo DB=sqlite:///results.db
	$(ABLATE) report --db sqlite:///results.db --readme README.md --plots docs/img

# One pytest worker per core (pytest-xdist): the suite's time is mostly Python starting the
# trainers' processes, one core each. tests/conftest.py gives every process one torch thread.
# ARGS: more pytest arguments, e.g. make test ARGS="-k report".
WORKERS ?= $(shell nproc)
PYTEST = $(PY) -m pytest -q -n $(WORKERS) --dist worksteal

test: $(STAMP)
	$(PYTEST) $(ARGS)

test-fast: $(STAMP)
	$(PYTEST) -m "not slow" $(ARGS)

test-under-load: $(STAMP)
	bash tools/test-under-load.sh

# The site's reference pages are generated from the code at build time (docs/_gen/); open
# site/index.html from disk. tests/test_docs.py builds it the same way.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf runs data/digits ablate.toml
