# agentd: `make run` serves on the development database, `make test` runs the suite
# against a throwaway PostgreSQL cluster that it starts and removes.

SWIFT ?= swift
DEV_DIR := .data/pg
DEV_PG_PORT ?= 55432
DEV_DATABASE_URL := postgres://postgres@127.0.0.1:$(DEV_PG_PORT)/agentd
# Benchmarks build optimised, in a folder of their own so that they never wait for (or
# invalidate) the debug build.
RELEASE := -c release --scratch-path .build-release

.PHONY: all build run test deps db db-stop clean bench-memory fuzz chaos

all: build

deps:
	@scripts/pg.sh deps

build: deps
	$(SWIFT) build

# Serves on $(HOST):$(PORT) (default 127.0.0.1:8001). Without DATABASE_URL it starts the
# development cluster (make db) and uses it. Pending migrations are applied first; Ctrl-C stops.
run: build
	@if [ -z "$$DATABASE_URL" ]; then $(MAKE) --no-print-directory db; fi
	DATABASE_URL="$${DATABASE_URL:-$(DEV_DATABASE_URL)}" exec "$$($(SWIFT) build --show-bin-path)/agentd" serve

# Builds first so that the cluster is up only while tests run.
test: deps
	$(SWIFT) build --build-tests
	scripts/with-test-db.sh $(SWIFT) test --skip-build

# Long-term memory: recall@5 and MRR on bench/memory/recall-set.json, then recall latency over
# 1,000,000 memories of 10,000 users, on a throwaway cluster. BENCH_MEMORY_FLAGS=--rows 100000 for a shorter run.
bench-memory: deps
	$(SWIFT) build $(RELEASE) --product agentd-bench
	scripts/with-test-db.sh "$$($(SWIFT) build $(RELEASE) --show-bin-path)/agentd-bench" memory $(BENCH_MEMORY_FLAGS)

# Schemathesis (from PyPI, in .data/fuzz-venv) against a live server on a throwaway database:
# FUZZ_EXAMPLES cases per operation, every answer checked against openapi.yaml.
fuzz: deps
	$(SWIFT) build --product agentd
	AGENTD_BIN="$$($(SWIFT) build --show-bin-path)/agentd" scripts/with-test-db.sh scripts/fuzz.sh

# The failure scenarios of the suite (SIGKILL and SIGTERM of one of two processes, a PostgreSQL
# restart) with CHAOS_TASKS tasks each, as one table.
CHAOS_TASKS ?= 1500
chaos: deps
	$(SWIFT) build --build-tests
	CHAOS_TASKS=$(CHAOS_TASKS) scripts/with-test-db.sh $(SWIFT) test --skip-build --filter 'ProcessDeathTests|DatabaseRestartTests' \
		| scripts/chaos-table.sh

# A persistent development cluster under .data/ on port $(DEV_PG_PORT), with database agentd.
db: deps
	@scripts/pg.sh start $(DEV_DIR) $(DEV_PG_PORT) >/dev/null
	@psql "postgres://postgres@127.0.0.1:$(DEV_PG_PORT)/postgres" -qtAc "SELECT 1 FROM pg_database WHERE datname = 'agentd'" | grep -q 1 \
		|| psql "postgres://postgres@127.0.0.1:$(DEV_PG_PORT)/postgres" -qc "CREATE DATABASE agentd"
	@echo "development database: $(DEV_DATABASE_URL)"

db-stop:
	@scripts/pg.sh stop $(DEV_DIR)

clean:
	$(SWIFT) package clean
