# The two set-up commands: `make run` (install, database, extract+load+transform, serve the API) and
# `make test`. Every target installs what it needs first; `make install` is a no-op when nothing changed.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.install-stamp
CATALOG_STAMP := $(VENV)/.tap-catalog-stamp
# Runs a command with PG* pointing at the database in use: $PGHOST if set, else the embedded server.
WITH_DB := $(BIN)/python -m tools.db exec --
API_PORT ?= 5000
MIRROR_PORT ?= 8000
DAGSTER_PORT ?= 3000
DAGSTER_WORKERS ?= 2
ORCHESTRATOR_STAMP := .meltano/utilities/dagster/.install-stamp
# The utility's executable, started directly (not by `meltano invoke`, which would prefix every log line).
ORCHESTRATOR := .meltano/utilities/dagster/venv/bin/exnaton-orchestrate
MANIFEST := orchestrate/dbt-target/manifest.json

.PHONY: install lock run el transform api roles psql db-env db-stop test lint format bench mirror docs clean \
	orchestrate orchestrate-install

install: $(STAMP) $(CATALOG_STAMP)

# Exact versions: locks/project.txt for .venv, locks/<plugin>.txt for each plugin (its pip_url passes it to uv).
LOCK := locks/project.txt
# The orchestrator (utility `dagster`) is not part of the mission's install: `make orchestrate` installs it.
ORCHESTRATOR_LOCK := locks/dagster.txt
PLUGIN_LOCKS := $(filter-out $(LOCK) $(ORCHESTRATOR_LOCK),$(wildcard locks/*.txt))
MISSION_PLUGINS := tap-exnaton target-postgres dbt-postgres
UV_VERSION = $(shell sed -n 's/^uv==\([^ ;]*\).*/\1/p' $(LOCK))

# uv installs everything; a new .venv gets the uv of the lock from pip first. The plugins are reinstalled from
# scratch when their locks change (an upgrade in place would keep packages the lock no longer has).
$(STAMP): $(LOCK) $(PLUGIN_LOCKS) meltano.yml tap-exnaton/pyproject.toml target-postgres-raw/pyproject.toml \
		pipeline-lock/pyproject.toml
	@test -x $(BIN)/uv || { $(PYTHON) -m venv $(VENV) && $(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION); }
	$(BIN)/uv pip sync --quiet --compile-bytecode --python $(BIN)/python $(LOCK)
	# uv (which meltano installs plugins with) skips bytecode compilation; where PYTHONDONTWRITEBYTECODE is set
	# (containers, CI) every tap, target and dbt run would then compile its imports again: ~2 s each.
	UV_COMPILE_BYTECODE=1 $(WITH_DB) $(BIN)/meltano install $(if $(filter $(PLUGIN_LOCKS),$?),--clean) $(MISSION_PLUGINS)
	@touch $@

# Meltano caches the tap's catalog (see the pip_url in meltano.yml), keyed on its settings only: a change of
# the tap's code (a schema, a key) drops the cache, so that the next run discovers again.
$(CATALOG_STAMP): $(wildcard tap-exnaton/tap_exnaton/*.py) $(STAMP)
	rm -f .meltano/run/tap-exnaton/tap.properties.cache_key
	@touch $@

## lock: resolve every environment again (newest versions the ranges allow) into locks/, then install them
lock: install
	$(BIN)/python -m tools.lock
	@$(MAKE) --no-print-directory install

## run: the whole thing — pipeline, then the API on 127.0.0.1:$(API_PORT)
run: install
	$(WITH_DB) $(BIN)/meltano run tap-exnaton target-postgres dbt
	$(MAKE) --no-print-directory api

## el: extract and load only
el: install
	$(WITH_DB) $(BIN)/meltano run tap-exnaton target-postgres

## transform: dbt build (models + data tests)
transform: install
	$(WITH_DB) $(BIN)/meltano run dbt

## orchestrate: Dagster on 127.0.0.1:$(DAGSTER_PORT) (webserver + daemon) with $(DAGSTER_WORKERS) Celery workers (local Redis)
orchestrate: orchestrate-install
	$(WITH_DB) $(ORCHESTRATOR) --port $(DAGSTER_PORT) --workers $(DAGSTER_WORKERS)

## orchestrate-install: the orchestrator's virtualenv (locks/dagster.txt) and the dbt manifest its assets read
orchestrate-install: $(ORCHESTRATOR_STAMP) $(MANIFEST)

$(ORCHESTRATOR_STAMP): $(STAMP) $(ORCHESTRATOR_LOCK) orchestrate/pyproject.toml
	UV_COMPILE_BYTECODE=1 $(WITH_DB) $(BIN)/meltano install $(if $(filter $(ORCHESTRATOR_LOCK),$?),--clean) dagster
	@touch $@

# Parsed once here, not when the code location loads: runs loading it in parallel would race (dagster-dbt).
$(MANIFEST): $(STAMP) $(shell find transform/models transform/macros transform/tests -type f 2>/dev/null) \
		transform/dbt_project.yml
	DBT_TARGET_PATH=$(CURDIR)/$(@D) $(WITH_DB) $(BIN)/meltano invoke dbt-postgres parse --quiet

## api: serve the REST API with gunicorn (Swagger UI at /docs), as the read-only role exnaton_api
# --preload: the app is loaded once, before the workers are forked, so they start together (and share it).
api: install
	$(WITH_DB) sh -c 'API_PGUSER=$${API_PGUSER:-$$($(BIN)/python -m tools.roles)} exec $(BIN)/gunicorn \
		--bind 127.0.0.1:$(API_PORT) --workers 3 --threads 4 --preload "api:create_app()"'

## roles: create/refresh the API's read-only role (make api does it too)
roles: install
	$(WITH_DB) $(BIN)/python -m tools.roles

## psql: a psql shell on the database in use
psql: install
	$(WITH_DB) $(BIN)/python -m tools.db psql

db-env: install
	@$(BIN)/python -m tools.db env

db-stop: install
	$(BIN)/python -m tools.db stop

## mirror: serve ../shared/data/exnaton (or MIRROR_DIR) on 127.0.0.1:$(MIRROR_PORT) in both API modes
# The standard library is all it needs: no install, which would race the install of a `make run` started with it.
mirror:
	$(PYTHON) -m tools.mirror $${MIRROR_DIR:-../shared/data/exnaton} --port $(MIRROR_PORT)

## docs: dbt docs generate (transform/target/index.html)
docs: install
	$(WITH_DB) $(BIN)/meltano invoke dbt-postgres:docs-generate

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) .meltano/extractors .meltano/loaders .meltano/utilities transform/target orchestrate/dbt-target
