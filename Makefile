# Every command a person or a workflow runs goes through here, so a laptop, CI and review run
# the same steps. The first target to need it builds .venv from requirements.lock.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin

export DO_NOT_TRACK := 1
export DBT_PROFILES_DIR := $(CURDIR)/dbt
export RECFLOW_DATA_DIR ?= $(CURDIR)/data/sample
export RECFLOW_DUCKDB_PATH ?= $(CURDIR)/data/warehouse.duckdb

.PHONY: install run ct sample build test lint format sqlfmt lock clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11) and "Python 3.11 is required: set PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[pipeline,dev]'
	$(BIN)/python -m pip check
	touch $@

## The main job on the embedded default: sample data (if none yet) -> dbt build on DuckDB.
run: install
	$(BIN)/recflow run

## The continuous-training sequence of the production workflow, locally on DuckDB:
## build -> train -> gate against the champion (runs/registry.json) -> promote -> serving build.
## CT_ARGS passes options, e.g. make ct CT_ARGS='--drop-feature popularity_rank'.
ct: install
	$(BIN)/recflow ct $(CT_ARGS)

sample: install
	$(BIN)/recflow sample --data-dir "$(RECFLOW_DATA_DIR)"

build: install
	$(BIN)/dbt build --project-dir dbt

## The test suite: lint (Python and SQL), then pytest (which builds the dbt project on samples).
test: lint
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@# sqlfluff's dbt templater opens the DuckDB file, so its folder must exist.
	mkdir -p "$(dir $(RECFLOW_DUCKDB_PATH))"
	$(BIN)/sqlfluff lint dbt/models dbt/tests analyses

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## Re-resolve every dependency (the trainer's, the pipeline's, the dev tools') in one pip run
## and pin the result.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet -e '.[pipeline,dev]'
	.lock-venv/bin/python -m pip check
	{ sed -n 1,2p requirements.lock; .lock-venv/bin/python -m pip freeze --exclude-editable; } > requirements.lock.new
	mv requirements.lock.new requirements.lock
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) data dbt/target dbt/logs .pytest_cache
