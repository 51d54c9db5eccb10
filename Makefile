# fitlens: every user-facing target depends on `setup`, so a fresh clone needs nothing else.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TORCH := torch==2.13.0
# The embedded MLflow store inside the project directory (see tracking/store.py).
STORE := sqlite:///$(CURDIR)/mlflow.db
ARGS ?=
STUDY ?=
CONFIG ?=
PORT ?= 8050
DEMO_EPOCHS ?= 4

.DEFAULT_GOAL := help
.PHONY: help setup browser demo dashboard train sweep sweep-resume smoke report server test bench bench-diagnosis lint mlflow-ui clean

help: ## Show this help.
	@echo "fitlens: make <target>"
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH) -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP) ## Create .venv and install fitlens (idempotent).

demo: setup ## Run the demo study (the init study, 4 epochs: ~2 min on 2 cores), then serve the dashboard.
	$(VENV)/bin/fitlens sweep --study init base.train.max_epochs=$(DEMO_EPOCHS) $(ARGS)
	$(VENV)/bin/fitlens dashboard --port $(PORT)

dashboard: setup ## Serve the dashboard at http://127.0.0.1:8050 over the embedded store (PORT=8050).
	$(VENV)/bin/fitlens dashboard --port $(PORT) $(ARGS)

train: setup ## Train the default config (an MLP on MNIST-1D) and record it in MLflow; ARGS="--config c.yaml optim.lr=3e-4".
	$(VENV)/bin/fitlens train $(ARGS)

sweep: setup ## Run a sweep on Ray Tune: STUDY=lr (see `fitlens studies`) or CONFIG=file.yaml; ARGS="num_samples=4".
	@if [ -n "$(STUDY)" ] && [ -n "$(CONFIG)" ]; then echo "make sweep: set STUDY or CONFIG, not both" >&2; exit 2; fi
	@if [ -z "$(STUDY)$(CONFIG)" ]; then echo "make sweep: set STUDY=name (one of: $$($(VENV)/bin/fitlens studies --json | $(PY) -c 'import json,sys; print(", ".join(s["name"] for s in json.load(sys.stdin)))')) or CONFIG=file.yaml" >&2; exit 2; fi
	$(VENV)/bin/fitlens sweep $(if $(STUDY),--study $(STUDY),--config $(CONFIG)) $(ARGS)

sweep-resume: setup ## Continue the most recent interrupted sweep in the embedded store.
	$(VENV)/bin/fitlens sweep --resume $(ARGS)

smoke: setup ## Run a study's sweep path in seconds (lr by default, two tiny trials); STUDY=init for another.
	$(VENV)/bin/fitlens sweep --study $(or $(STUDY),lr) --smoke $(ARGS)

report: setup ## Diagnose a recorded run or sweep: RUN=<run id or sweep parent run id>; ARGS="--json".
	@if [ -z "$(RUN)" ]; then echo "make report: set RUN=<run id> (a run's, or a sweep's parent run's; see make mlflow-ui)" >&2; exit 2; fi
	$(VENV)/bin/fitlens report $(RUN) $(ARGS)

# The server's port defaults to MLflow's 5000, not the dashboard's 8050; PORT given to make still wins.
SERVER_PORT = $(if $(filter file,$(origin PORT)),5000,$(PORT))

server: setup ## Serve a team's MLflow tracking server on PostgreSQL at 127.0.0.1:5000 (PORT=5000); ARGS="--host 0.0.0.0".
	$(VENV)/bin/fitlens server --port $(SERVER_PORT) $(ARGS)

browser: ## Install Debian's chromium and chromium-driver for the dashboard's browser test (once, needs root).
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		{ $$( [ "$$(id -u)" = 0 ] || echo sudo -n ) apt-get install -y -q chromium chromium-driver >/dev/null || \
		  echo "make browser: could not install chromium; the browser test will say so" >&2; }

test: setup browser ## Run the test suite (in two workers: about half of it is waiting, not computing).
	$(PY) -m pytest -q -n 2 --dist loadgroup $(ARGS)

$(VENV)/.bench-installed: $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	touch $@

bench: $(VENV)/.bench-installed ## Measure diagnostics, sweeps, the dashboard and the write path, side by side (prints the README's tables).
	$(PY) benchmarks/bench_diagnostics.py $(ARGS)
	$(PY) benchmarks/bench_sweeps.py
	$(PY) benchmarks/bench_dashboard.py
	$(PY) benchmarks/bench_tracking.py

bench-diagnosis: setup ## Train the fault zoo and score the diagnosis on it (~2 minutes on 2 cores; ARGS="--held-out").
	$(PY) benchmarks/bench_diagnosis.py $(ARGS)

lint: setup ## Run ruff and the import layers' contracts (lint-imports).
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

mlflow-ui: setup ## Serve the MLflow UI on 127.0.0.1:5000 over the embedded store.
	$(VENV)/bin/mlflow ui --backend-store-uri $(STORE) --host 127.0.0.1 --port 5000

clean: ## Remove the virtual environment and caches (keeps mlflow.db and mlartifacts/).
	rm -rf $(VENV) .pytest_cache .ruff_cache
