#!/usr/bin/env bash
# wordfreq (PyPI; code Apache 2.0, data CC BY-SA 4.0) in an ignored virtual environment, for
# scripts/general-terms.py. Prints the environment's python. WORDFREQ_VENV overrides where.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
exec "$root/scripts/python-venv.sh" "${WORDFREQ_VENV:-$root/.data/wordfreq-venv}" "import wordfreq" "wordfreq==3.1.1"
