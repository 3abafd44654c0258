#!/usr/bin/env bash
# scikit-learn (from PyPI) in an ignored virtual environment, for bench/memory/analyze_no_answer.py
# (make bench-memory-explain). Prints the environment's python. ANALYSIS_VENV overrides where it goes.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
exec "$root/scripts/python-venv.sh" "${ANALYSIS_VENV:-$root/.data/analysis-venv}" "import sklearn, numpy" "scikit-learn==1.9.1" "numpy==2.4.6"
