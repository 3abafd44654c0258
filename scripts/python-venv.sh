#!/usr/bin/env bash
# An ignored virtual environment with PyPI packages, made once: python-venv.sh DIR CHECK PACKAGE...
# CHECK is Python that succeeds once the packages are there (`import mcp`); python3-venv comes
# from Debian's packages when missing (as root). Prints the environment's python.
set -euo pipefail
venv=$1
check=$2
shift 2

if ! "$venv/bin/python" -c "$check" >/dev/null 2>&1; then
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
    "$venv/bin/pip" install -q "$@" >&2
fi
echo "$venv/bin/python"
