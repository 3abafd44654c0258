#!/usr/bin/env bash
# WordLlama (from PyPI, MIT; its 256-dimension model ships inside the wheel) in an ignored
# virtual environment, for measuring recall's semantic pass with a real local model
# (make bench-memory-semantic). Prints the environment's python. EMBEDDINGS_VENV overrides where.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
exec "$root/scripts/python-venv.sh" "${EMBEDDINGS_VENV:-$root/.data/embeddings-venv}" "import wordllama" "wordllama==0.4.0.post1"
