#!/usr/bin/env bash
# Prepare the benchmark: bench/.venv (bench/requirements.txt), wrk and taskset from Debian's packages.
# Idempotent: a second run only checks.  Usage: bench/setup.sh  [PYTHON=python3]
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
VENV=.venv
STAMP="$VENV/.installed"

# Debian packages: wrk (the HTTP load generator) and taskset (util-linux), installed only when missing.
missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "bench/setup.sh: installing ${missing[*]} with apt-get" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

# The benchmark's own venv (the mock upstream and the stream client run from it).
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
if [ ! -f "$STAMP" ] || [ requirements.txt -nt "$STAMP" ]; then
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -r requirements.txt
    touch "$STAMP"
fi
echo "bench/setup.sh: ready (wrk: $(command -v wrk), taskset: $(command -v taskset), venv: bench/$VENV)" >&2
