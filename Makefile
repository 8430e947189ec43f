# report_pipelines: the two commands are `make demo` and `make test`; `make dev` opens the UI.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export REPORT_PIPELINES_DATA_DIR ?= $(CURDIR)/data
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
DAGSTER_STORAGE ?= sqlite
DAGSTER_PORT ?= 3000
export DAGSTER_PG_HOST ?= 127.0.0.1
export DAGSTER_PG_PORT ?= 5432
export DAGSTER_PG_USER ?= postgres
export DAGSTER_PG_PASSWORD ?=
export DAGSTER_PG_DB ?= dagster
PYTEST_ARGS ?=
# make test runs the suite on this many processes, each taking whole test files (pytest-xdist's loadfile:
# a file's module fixtures are built once); 0 runs it in this process.
PYTEST_WORKERS ?= 2

CLUSTER_DB ?= report_pipelines_cluster_demo
CLUSTER_DATA_DIR ?= $(CURDIR)/data_cluster

.PHONY: demo demo-cluster test lint dev prod bench install dagster-home ensure-postgres ensure-chromium clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,bench]'
	touch $@

dagster-home:
	mkdir -p $(DAGSTER_HOME)
	if [ "$(DAGSTER_STORAGE)" = "postgres" ]; then \
	  cp dagster.postgres.yaml $(DAGSTER_HOME)/dagster.yaml; \
	  psql -h $(DAGSTER_PG_HOST) -p $(DAGSTER_PG_PORT) -U $(DAGSTER_PG_USER) -tAc \
	    "SELECT 1 FROM pg_database WHERE datname='$(DAGSTER_PG_DB)'" postgres | grep -q 1 || \
	  createdb -h $(DAGSTER_PG_HOST) -p $(DAGSTER_PG_PORT) -U $(DAGSTER_PG_USER) $(DAGSTER_PG_DB); \
	else cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml; fi

## make demo: venv + install, migrate a SQLite database, seed demo data, run the main job end to end.
## With the embedded default (no REPORT_PIPELINES_DATABASE_URL) it starts from scratch every time.
demo: install ensure-chromium
	@if [ -z "$$REPORT_PIPELINES_DATABASE_URL" ]; then \
	  echo "fresh embedded demo: removing $(REPORT_PIPELINES_DATA_DIR) and $(DAGSTER_HOME)"; \
	  rm -rf "$(REPORT_PIPELINES_DATA_DIR)" "$(DAGSTER_HOME)"; fi
	$(MAKE) --no-print-directory dagster-home
	$(BIN)/report-pipelines db upgrade
	$(BIN)/report-pipelines demo seed --reset
	$(BIN)/report-pipelines demo run
	@echo
	@echo "Next: 'make dev' opens the Dagster UI on this data (http://127.0.0.1:$(DAGSTER_PORT))."

## make demo-cluster: two Celery workers against the running Redis (127.0.0.1:6379) and PostgreSQL, a
## backfill through them (a database and data folder of its own: make demo's are not touched), who
## computed what; it stops the workers it started.
demo-cluster: install dagster-home
	psql -h $(DAGSTER_PG_HOST) -p $(DAGSTER_PG_PORT) -U $(DAGSTER_PG_USER) -tAc \
	  "SELECT 1 FROM pg_database WHERE datname='$(CLUSTER_DB)'" postgres | grep -q 1 || \
	  createdb -h $(DAGSTER_PG_HOST) -p $(DAGSTER_PG_PORT) -U $(DAGSTER_PG_USER) $(CLUSTER_DB)
	export REPORT_PIPELINES_DATABASE_URL=postgresql://$(DAGSTER_PG_USER)@$(DAGSTER_PG_HOST):$(DAGSTER_PG_PORT)/$(CLUSTER_DB) \
	  REPORT_PIPELINES_DATA_DIR=$(CLUSTER_DATA_DIR); \
	$(BIN)/report-pipelines db upgrade && \
	$(BIN)/report-pipelines demo seed --reset --clients 12 --days 7 && \
	$(BIN)/report-pipelines demo cluster --days 3

## make test: venv + install, the linter, then the whole suite (SQLite and the PostgreSQL at 127.0.0.1:5432).
test: install ensure-postgres ensure-chromium lint
	$(BIN)/python -m pytest report_pipelines_tests $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile) $(PYTEST_ARGS)

## make lint: ruff, configured in ruff.toml.
lint: install
	$(BIN)/ruff check .

## make dev: the Dagster UI and daemon on the demo data (run `make demo` first).
dev: install dagster-home
	$(BIN)/report-pipelines db upgrade
	$(BIN)/report-pipelines dev --port $(DAGSTER_PORT)

## make prod: the production profile (README "Production"): reads $(PROD_ENV) (copy it from
## deploy/production.env.example), puts deploy/dagster.production.yaml in its DAGSTER_HOME, migrates the
## app database and runs the Dagster webserver and daemon until stopped (Ctrl-C / SIGTERM stops both).
PROD_ENV ?= deploy/production.env
prod: install
	@test -f "$(PROD_ENV)" || { echo "make prod: $(PROD_ENV) is missing; copy deploy/production.env.example there and edit it" >&2; exit 2; }
	set -a && . "$(PROD_ENV)" && set +a && \
	  mkdir -p "$$DAGSTER_HOME" && cp deploy/dagster.production.yaml "$$DAGSTER_HOME/dagster.yaml" && \
	  $(BIN)/report-pipelines db upgrade && \
	  exec $(BIN)/report-pipelines dagster-up --host "$${DAGSTER_HOST:-127.0.0.1}" --port "$${DAGSTER_PORT:-3000}"

## make bench: every benchmark script (slow; prints ratios measured in the same run).
bench: install ensure-postgres
	for script in benchmarks/bench_*.py; do $(BIN)/python $$script || exit 1; done

# PostgreSQL is started by this kind of machine; start it if it is not answering.
ensure-postgres:
	@pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null || \
	  (command -v pg_ctlcluster >/dev/null && pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | head -n1) main start) || true

# The report e-mail tests render the HTML in Debian's headless Chromium; they fail (never skip) without it.
ensure-chromium:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

clean:
	rm -rf $(VENV) data .dagster_home .pytest_cache *.egg-info
