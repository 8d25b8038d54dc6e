# archbench: `make demo` runs the offline quickstart sweep; `make test` runs lint, types and tests.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest clean venv bench

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/archbench run configs/quickstart.yaml

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

test: lint typecheck pytest

# Benchmarks: each script prints one JSON line (ratios from interleaved A/B pairs, load average recorded).
bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/step_throughput.py
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/data_path.py
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/syncs_per_step.py
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/report_scale.py

clean:
	rm -rf results reports .pytest_cache .mypy_cache .ruff_cache
