#!/usr/bin/env bash
# wrk (Debian package), the HTTP load generator `make bench` reads status with: a C event loop
# that costs a fraction of what a Swift client would take of the two cores it measures on.
# Prints the path of the wrk binary.
set -euo pipefail
if ! command -v wrk >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then
        echo "installing wrk (Debian package)" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null
    else
        echo "missing: wrk; install it with: sudo apt-get install -y wrk" >&2
        exit 1
    fi
fi
command -v wrk
