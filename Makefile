# archbench: `make demo` runs the offline quickstart sweep; `make test` runs lint, types, the docs build and the
# fast tests; `make test-slow` the slow end-to-end tests (CI runs both).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow test-all lint typecheck docs pytest browser clean venv bench readme-outputs

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/archbench run configs/quickstart.yaml

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/lint-imports
	$(BIN)/python scripts/check_structure.py src/archbench
	$(BIN)/python scripts/gen_reference.py --check

typecheck: $(STAMP)
	$(BIN)/mypy

# The docs site (docs/, mkdocs.yml): the reference regenerated from the code, then a strict, offline build
# (Material's bundled assets only) into site/. Open site/index.html.
docs: $(STAMP)
	$(BIN)/python scripts/gen_reference.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# Headless Chromium for the report-rendering test, installed once here (never from inside a test).
# Tolerates failure: without it that one test skips, naming the reason.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    timeout 900 apt-get install -y -q chromium >/dev/null 2>&1 && echo "browser: installed chromium"; } || \
	  echo "browser: chromium not available; the report-rendering test will skip"

# `make test` (≤ 10 min here): lint, types, the docs build and the fast set (pyproject's addopts deselect
# `slow`), spread over the cores by pytest-xdist (one worker per core, at most 4). `make test-slow`: the slow
# end-to-end set, one test at a time (~15 min on 2 cores). CI (.ci/run) runs both.
pytest: $(STAMP) browser
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -n auto --maxprocesses 4

test: lint typecheck docs pytest

test-slow: $(STAMP) browser
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m slow

test-all: test test-slow

# Benchmarks: each script prints one JSON line (ratios from interleaved A/B pairs, load average recorded).
bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/step_throughput.py
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/data_path.py
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/syncs_per_step.py
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/report_scale.py
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/startup.py
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/augment_epoch.py
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/ray_overhead.py
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/map_speed.py

# The README's captured command output (docs/outputs/, quoted in README.md), with date, commit and load.
# Run on an idle machine: a few minutes on 2 CPU cores; needs ../shared/data.
readme-outputs: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python scripts/readme_outputs.py

clean:
	rm -rf results reports site .pytest_cache .mypy_cache .ruff_cache
