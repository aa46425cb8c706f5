# robust-transfer-book: `make book` (mini preset, HTML into _build/html) and `make test`.
# Both set up everything on a fresh machine: the venv with pinned packages, the package in
# editable mode, and Debian's Fashion-MNIST files plus headless Chromium and its driver for the
# browser check of the built book (apt, when we are root and apt exists).
SHELL   := /bin/bash
PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
PRESET  ?= mini
SEED_OFFSET ?= 0
TRAIN_THREADS ?=
STAMP   := $(VENV)/.installed
FMNIST  := /usr/share/datasets/fashion-mnist
CHROMIUM := /usr/bin/chromium
DRIVER  := /usr/bin/chromedriver

.PHONY: env data browser book publish test test-fast bench clean

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

data:
	@if [ -d $(FMNIST) ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	else \
	  echo "note: $(FMNIST) missing and apt unavailable; fashion_mnist falls back to a torchvision root"; \
	fi

## make browser: Debian's chromium + chromium-driver for robust_transfer.browser (tests skip without)
browser:
	@if [ -x $(CHROMIUM) ] && [ -x $(DRIVER) ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "apt-get install chromium chromium-driver (browser check of the book)"; \
	  log=$$({ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends chromium chromium-driver fonts-liberation; } 2>&1) \
	  || { echo "$$log" | tail -n 5; echo "note: installing chromium failed; tests/test_browser.py will skip"; }; \
	else \
	  echo "note: $(CHROMIUM) or $(DRIVER) missing (install needs root and apt-get); tests/test_browser.py will skip"; \
	fi

env: $(STAMP) data browser

## make book: execute every notebook on $(PRESET) with papermill, build _build/html (strict);
## SEED_OFFSET=6 trains source seeds disjoint from the default build's, TRAIN_THREADS=2 trains
## the sources at 2 torch threads (replication builds)
book: env
	$(PY) -m robust_transfer.book --preset $(PRESET) --source-seed-offset $(SEED_OFFSET) \
	  $(if $(TRAIN_THREADS),--train-threads $(TRAIN_THREADS)) --out _build

## make publish: push the built book (_build/html) to the gh-pages branch of the repository's
## remote; its Colab buttons open the executed notebooks published there (_sources/notebooks),
## which install the commit the book was built from
publish: env
	$(PY) -m ghp_import --no-jekyll --push --force --branch gh-pages _build/html

## make test: unit tests, every notebook on the tiny preset, and a strict book build of those
test: env
	$(PY) -m pytest

## make test-fast: the unit tests only (tests/unit; no notebooks, no book build), one pytest
## worker per core (pytest-xdist)
test-fast: env
	$(PY) -m pytest -n auto -m "not slow" tests/unit

## make bench: performance ratios measured in one run each
bench: env
	$(PY) benchmarks/transfer_fast_path.py
	$(PY) benchmarks/influence_hessian.py
	$(PY) benchmarks/influence_paper_size.py
	$(PY) benchmarks/augment_batched.py

clean:
	rm -rf _build .pytest_cache
