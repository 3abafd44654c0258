#!/usr/bin/env bash
# The Python MCP SDK (from PyPI) in an ignored virtual environment, for the real MCP server that
# the tests start (Tests/Fixtures/mcp_test_server.py) and for examples/maps_server.py.
# Prints the environment's python. MCP_VENV overrides where it goes.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${MCP_VENV:-$root/.data/mcp-venv}
mcp_version=1.30.0

if ! "$venv/bin/python" -c "import mcp, uvicorn" >/dev/null 2>&1; then
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
        if [ "$(id -u)" -eq 0 ]; then
            DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
            rm -rf "$venv"
            python3 -m venv "$venv"
        else
            echo "python3 -m venv failed; install it with: sudo apt-get install -y python3-venv" >&2
            exit 1
        fi
    fi
    "$venv/bin/pip" install -q "mcp==$mcp_version" >&2
fi
echo "$venv/bin/python"
