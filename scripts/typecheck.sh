#!/usr/bin/env bash
# mypy over the core packages (pyproject.toml's [tool.mypy]); scripts/test.sh and pre-commit run it.
# The repository root is the package, so mypy reads it through a link named `llamaops`, kept outside
# the checkout (a link inside it would make the tree contain itself for anything that walks it).
set -euo pipefail
cd "$(dirname "$0")/.."
root="${XDG_CACHE_HOME:-$HOME/.cache}/llamaops/typecheck/$(printf %s "$PWD" | cksum | cut -d" " -f1)"
mkdir -p "$root" && ln -sfn "$PWD" "$root/llamaops"
MYPYPATH="$root" exec .venv/bin/python -m mypy --config-file pyproject.toml --cache-dir "$root/cache" \
  -p llamaops.platform.config -p llamaops.platform.store -p llamaops.platform.model -p llamaops.platform.serve
