#!/usr/bin/env bash
# Headless Chromium and chromedriver (Debian packages, with CJK fonts so that the Chinese pages
# render) and Selenium (from PyPI) in an ignored virtual environment, for the console's browser
# test (Tests/Fixtures/console_browser.py). Prints the environment's python.
# BROWSER_VENV overrides where it goes.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${BROWSER_VENV:-$root/.data/browser-venv}
selenium_version=4.51.0

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
fc-list 2>/dev/null | grep -qi "noto.*cjk" || missing+=(fonts-noto-cjk)
python3 -m venv --help >/dev/null 2>&1 || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
        echo "installing ${missing[*]} (Debian packages)" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "missing: ${missing[*]}; install them with: sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
fi

if ! "$venv/bin/python" -c "import selenium; assert selenium.__version__ == '$selenium_version'" >/dev/null 2>&1; then
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "selenium==$selenium_version" >&2
fi
echo "$venv/bin/python"
