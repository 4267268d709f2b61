# Two entry points that do all their own set-up on a fresh machine:
#   make demo   create .venv if missing, install, prepare Fashion-MNIST, train on it
#   make test   create .venv if missing, install, run the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ABLATE := $(VENV)/bin/ablate
STAMP := $(VENV)/.installed

.PHONY: install demo test lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

data/fashion-mnist/dataset.json: | $(STAMP)
	$(ABLATE) data prepare fashion-mnist --out data/fashion-mnist

demo: $(STAMP) data/fashion-mnist/dataset.json
	$(PY) -m zoo.train --config configs/fashion_mnist_resnet20.yaml --out runs/fashion_mnist_resnet20

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf runs data/digits
