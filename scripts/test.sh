#!/usr/bin/env bash
# Install llamaops with its test dependencies, then run the whole test suite.
# Extra arguments go to pytest (e.g. scripts/test.sh tests/unit -x).
set -uo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

# The whole suite runs the unit and integration tiers first (pyproject's testpaths order). Meanwhile
# the cluster tiers' slow, host-wide part runs in the background at low priority: from the start,
# the node's Debian packages and Kubernetes built from Debian's source (~10 min cold, instant when
# cached); once the install is done, the llamaops image on the node's image store (~6 min cold).
# The cluster tiers' own set-up waits for them (locks) and redoes whatever they could not do.
logs="${LLAMAOPS_K8S_CACHE:-$HOME/.cache/llamaops/k8s}"
background=()
in_background() {  # NAME CMD...: run CMD niced, its output in $logs/NAME.log
  local name=$1; shift
  nice -n 10 "$@" >"$logs/$name.log" 2>&1 &
  background+=("$name:$!")
}
prepare_here=0
if [ $# = 0 ] && [ "$(uname -s)" = Linux ]; then
  prepare_here=1
  mkdir -p "$logs"
  if [ "$(id -u)" = 0 ]; then
    in_background prepare env -C tests/cluster PYTHONPATH="$PWD/tests/cluster" python3 -m localup prepare
  else
    in_background prepare bash tests/cluster/build_k8s.sh
  fi
fi

if ! bash scripts/install.sh --test; then
  for job in "${background[@]}"; do kill "${job#*:}" 2>/dev/null; done
  exit 1
fi
echo "test.sh: install took $((SECONDS - start)) s"
if [ $# = 0 ] && ! .venv/bin/ruff check --quiet .; then
  echo "test.sh: ruff found the problems above; fix them (many: .venv/bin/ruff check --fix)" >&2
  for job in "${background[@]}"; do kill "${job#*:}" 2>/dev/null; done
  exit 1
fi
# Types of the core packages (~1 min cold, seconds when cached).
if [ $# = 0 ]; then
  if ! bash scripts/typecheck.sh; then
    echo "test.sh: mypy found the type errors above; fix them (annotations or narrowing, not blanket ignores)" >&2
    for job in "${background[@]}"; do kill "${job#*:}" 2>/dev/null; done
    exit 1
  fi
fi
if [ "$prepare_here" = 1 ] && [ "$(id -u)" = 0 ]; then
  in_background image env -C tests/cluster PYTHONPATH="$PWD/tests/cluster" python3 -m localup with-docker \
    env DOCKER=/usr/bin/docker PYTHON="$PWD/.venv/bin/python" \
    bash "$PWD/scripts/build-image.sh" --host-base --tag llamaops/llamaops:local
fi

export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MLFLOW_DISABLE_TELEMETRY=true
if [ $# != 0 ]; then
  .venv/bin/python -m pytest "$@"
  rc=$?
else
  # The whole suite as two pytest processes, one per core. The integration tests that run Ray
  # (several worker processes each) stay in one process, so one Ray runs at a time; its output is
  # live here. Alongside: the unit tier, the other integration tests (single-process, local
  # services), then the cluster tiers (which wait for the background preparation); their output
  # goes to $others_log, printed once the Ray tests end. Every port is picked free; pytest numbers
  # each process's temporary directory apart.
  ray_tests=(tests/integration/align tests/integration/data tests/integration/pipelines tests/integration/train
             tests/integration/eval/test_eval_stage.py)
  others_log=build/tests/others.log
  mkdir -p build/tests
  .venv/bin/python -m pytest -p no:cacheprovider tests/unit tests/integration "${ray_tests[@]/#/--ignore=}" \
    tests/cluster tests/pods tests/e2e >"$others_log" 2>&1 &
  others=$!
  trap 'kill -INT "$others" 2>/dev/null' EXIT
  .venv/bin/python -m pytest "${ray_tests[@]}"
  rc=$?
  wait "$others"
  others_rc=$?
  trap - EXIT
  echo "test.sh: the other tests ran alongside; their output ($others_log):"
  cat "$others_log"
  for code in "$rc" "$others_rc"; do
    [ "$code" = 5 ] && { echo "error: a pytest process collected no tests; the suite must never be empty" >&2; rc=1; }
  done
  [ "$rc" = 0 ] && rc=$others_rc
fi
for job in "${background[@]}"; do
  name=${job%%:*}
  wait "${job#*:}" || echo "test.sh: the background $name step failed; see $logs/$name.log" >&2
  echo "test.sh: background $name: $(tail -n 1 "$logs/$name.log")"
done
echo "test.sh: total $((SECONDS - start)) s"
if [ "$rc" = 5 ]; then
  echo "error: pytest collected no tests; the suite must never be empty" >&2
  exit 1
fi
exit "$rc"
