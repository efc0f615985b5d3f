# passt-study: two commands for a newcomer, `make study` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
KERNEL := passt-study
APT_PACKAGES := fluidsynth fluid-soundfont-gm timgm6mb-soundfont musescore-general-soundfont-small \
	hydrogen-drumkits hydrogen-data espeak-ng flite asterisk-core-sounds-en-wav

.PHONY: setup system-packages test test-fast lint stale study figures lab tour-html clean-venv

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

# Committed result CSVs older than the code they measure: a report, not a test (exits 0).
# Needs the package and git, not the system packages.
stale: $(STAMP)
	$(BIN)/python -m passt_lib.stale

study: setup
	$(BIN)/passt-study study

figures: setup
	$(BIN)/passt-study figures

# Jupyter refuses to run as root (every container and CI) unless told: say so and tell it.
lab: setup
	@if [ "$$(id -u)" = 0 ]; then echo "running as root: starting JupyterLab with --allow-root"; \
		ROOT_FLAG=--allow-root; fi; \
	$(BIN)/jupyter lab --notebook-dir=notebooks $$ROOT_FLAG

# The tour at the embedded scale as a handout: every figure, no code to run (git-ignored).
tour-html: setup
	$(BIN)/papermill -k $(KERNEL) notebooks/00_tour.ipynb results/tour.ipynb \
		-p out_dir results/runs/manual/tour --no-progress-bar
	$(BIN)/jupyter nbconvert --to html results/tour.ipynb --output tour.html
	@rm -f results/tour.ipynb
	@echo "wrote results/tour.html"

clean-venv:
	rm -rf $(VENV)
