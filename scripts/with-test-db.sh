#!/usr/bin/env bash
# Runs a command with DATABASE_URL pointing at a throwaway PostgreSQL cluster on a free
# 127.0.0.1 port; the cluster is stopped and removed afterwards, whatever the command did.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d "${TMPDIR:-/tmp}/agentd-test-XXXXXX")
cleanup() {
    "$here/pg.sh" stop "$dir" || true
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# Durability settings off by default: this cluster is thrown away, and the suite runs faster.
# More connections than pg.sh's 300: the suite starts its tests at once, and many start one or
# two agentd services of their own (a pool and a listener each); 154 tests peaked above 300.
# Benchmarks pass their own settings in THROWAWAY_PG_OPTIONS (durable, as in production).
options=${THROWAWAY_PG_OPTIONS-"-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=1000"}
port=$(PG_EXTRA_OPTIONS="$options" "$here/pg.sh" start "$dir")
export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
echo "throwaway PostgreSQL on 127.0.0.1:$port ($dir)" >&2
"$@"
