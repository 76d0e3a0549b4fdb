# `make run` and `make test` do all set-up: they create .venv, install torch first, then the studio with every
# dependency at the version pinned in requirements.lock (refreshed on purpose with `make lock`).
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PORT ?= 8501
LLAMA_CPP_CMAKE_ARGS ?= -DGGML_OPENMP=OFF
LOCK := requirements.lock
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FAST_STAMP := $(VENV)/.installed-fast
PROJECT := llm-customization-studio
SHELL := /bin/bash

.PHONY: run test install fast lock test-latest bench i18n clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstalls only when pyproject.toml or the lock changed since the last install (a second run installs nothing).
$(STAMP): pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e ".[dev]"
	touch $(STAMP)

# The optional llama.cpp engine (several times faster answers on a CPU): compiled from source once, about 5 minutes.
# Without OpenMP: llama.cpp's own thread pool is not slowed by the one PyTorch leaves spinning in the same process.
# No wheel cache, so a build made with other flags is never reused.
$(FAST_STAMP): $(STAMP) build-constraints.txt
	PIP_CONSTRAINT="$(CURDIR)/build-constraints.txt" CMAKE_ARGS="$(LLAMA_CPP_CMAKE_ARGS)" $(BIN)/python -m pip install --quiet --no-cache-dir -c $(LOCK) -e ".[dev,fast]"
	touch $(FAST_STAMP)

install: $(STAMP)

fast: $(FAST_STAMP)

run: $(STAMP)
	$(BIN)/studio run --port $(PORT)

test: $(FAST_STAMP)
	$(BIN)/python -m pytest -q

# Resolve every dependency afresh (newest releases pyproject.toml allows) in a throw-away venv and pin them all.
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet "$(TORCH_SPEC)"
	CMAKE_ARGS="$(LLAMA_CPP_CMAKE_ARGS)" .venv-lock/bin/python -m pip install --quiet --no-cache-dir ".[dev,fast]"
	{ echo "# Every dependency of the studio, transitive ones included, pinned. Written by \`make lock\`; do not edit."; \
	  echo "# Installed as constraints: pip install -c $(LOCK) -e \".[dev]\" (after $(TORCH_SPEC))."; \
	  .venv-lock/bin/python -m pip freeze --exclude $(PROJECT) \
	    | sed -E 's/^(torch==[^+]+)\+.*/\1/'; } > $(LOCK).tmp
	mv $(LOCK).tmp $(LOCK)
	rm -rf .venv-lock

# The newest releases pyproject.toml allows, in a separate venv, on the fast suite: an upstream break shows here first.
test-latest:
	rm -rf .venv-latest
	$(PYTHON) -m venv .venv-latest
	.venv-latest/bin/python -m pip install --quiet "$(TORCH_SPEC)"
	CMAKE_ARGS="$(LLAMA_CPP_CMAKE_ARGS)" .venv-latest/bin/python -m pip install --quiet --no-cache-dir --upgrade -e ".[dev,fast]"
	.venv-latest/bin/python -m pip freeze --exclude-editable > .venv-latest/versions.txt
	-diff <(grep -v '^#' $(LOCK) | sort) <(sort .venv-latest/versions.txt) | grep '^[<>]' || true
	.venv-latest/bin/python -m pytest -q -m "not real_model and not browser"

bench: $(FAST_STAMP)
	$(BIN)/python bench/generate.py --ladder
	$(BIN)/python bench/estimate.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/query.py
	$(BIN)/python bench/sweep.py
	$(BIN)/python bench/train.py
	$(BIN)/python bench/demo_load.py

# After adding or changing UI text: refresh the catalog template and merge it into each language's .po file,
# then translate the new entries (the i18n tests fail until every message has a translation).
i18n: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg -k t -k Msg --no-location --sort-output --omit-header \
		-o core/locales/messages.pot core studio pages
	$(BIN)/pybabel update -i core/locales/messages.pot -d core/locales --no-fuzzy-matching --ignore-obsolete

clean-venv:
	rm -rf $(VENV)
