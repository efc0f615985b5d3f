# passt-study: two commands for a newcomer, `make study` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
KERNEL := passt-study
APT_PACKAGES := fluidsynth fluid-soundfont-gm timgm6mb-soundfont musescore-general-soundfont-small \
	hydrogen-drumkits hydrogen-data espeak-ng flite asterisk-core-sounds-en-wav

.PHONY: setup system-packages test test-fast lint study figures lab clean-venv

setup: $(STAMP) system-packages

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Reinstalls only when pyproject.toml changes, so a second `make setup` takes seconds.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (passt-study)" >/dev/null
	touch $(STAMP)

system-packages:
	@$(BIN)/python -m passt_lib.system_packages --install $(APT_PACKAGES)

test: setup
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup
	$(BIN)/ruff check passt_lib tests

study: setup
	$(BIN)/passt-study study

figures: setup
	$(BIN)/passt-study figures

lab: setup
	$(BIN)/jupyter lab --notebook-dir=notebooks

clean-venv:
	rm -rf $(VENV)
