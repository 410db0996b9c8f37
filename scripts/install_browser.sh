#!/usr/bin/env bash
# Install Debian's `chromium` (for tests/test_browser.py, which drives it with the Python `playwright`
# package at /usr/bin/chromium; `playwright install` is never used: it downloads a browser build).
# Idempotent: does nothing (in well under a second) when chromium is already installed.
# Needs root (or sudo) and apt access to Debian's archive. Usage: bash scripts/install_browser.sh
set -euo pipefail

CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"

if [ -x "$CHROMIUM" ] && "$CHROMIUM" --version >/dev/null 2>&1; then
    echo "chromium already installed: $("$CHROMIUM" --version 2>/dev/null)"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser.sh: apt-get not found; install Chromium by hand at $CHROMIUM" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install_browser.sh: must run as root (or with sudo) to apt-get install chromium" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
# The package lists may be missing or stale on a fresh machine; update once, then install.
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
echo "installed: $("$CHROMIUM" --version 2>/dev/null)"
