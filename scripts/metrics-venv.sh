#!/usr/bin/env bash
# prometheus_client (from PyPI) in an ignored virtual environment: the tests parse agentd's
# /metrics with its text-format parser, as Prometheus reads it. Prints the environment's python.
# METRICS_VENV overrides where it goes.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
exec "$root/scripts/python-venv.sh" "${METRICS_VENV:-$root/.data/metrics-venv}" "import prometheus_client" "prometheus_client==0.21.1"
