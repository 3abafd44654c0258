#!/usr/bin/env bash
# The Python MCP SDK (from PyPI) in an ignored virtual environment, for the real MCP server that
# the tests start (Tests/Fixtures/mcp_test_server.py) and for examples/maps_server.py.
# Prints the environment's python. MCP_VENV overrides where it goes.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
exec "$root/scripts/python-venv.sh" "${MCP_VENV:-$root/.data/mcp-venv}" "import mcp, uvicorn" "mcp==1.30.0"
