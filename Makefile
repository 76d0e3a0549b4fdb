# `make run` and `make test` do all set-up: they create .venv, install torch first, then the studio.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PORT ?= 8501
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install bench i18n clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstalls only when pyproject.toml changed since the last install (second run installs nothing).
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/studio run --port $(PORT)

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/generate.py
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
