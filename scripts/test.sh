#!/usr/bin/env bash
# Install llamaops with its test dependencies, then run the whole test suite.
# Extra arguments go to pytest (e.g. scripts/test.sh tests/unit -x).
set -uo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
bash scripts/install.sh --test || exit 1
echo "test.sh: install took $((SECONDS - start)) s"

# The whole suite runs the unit and integration tiers first (pyproject's testpaths order). Meanwhile
# the cluster tiers' slow, host-wide part (the node's Debian packages, Kubernetes built from Debian's
# source: ~10 min cold, instant when cached) runs in the background at low priority; the cluster
# tiers' own set-up waits for it (a lock) and redoes whatever it could not do.
prepare_log="${LLAMAOPS_K8S_CACHE:-$HOME/.cache/llamaops/k8s}/prepare.log"
prepare_pid=""
if [ $# = 0 ] && [ "$(uname -s)" = Linux ]; then
  mkdir -p "$(dirname "$prepare_log")"
  if [ "$(id -u)" = 0 ]; then
    (cd tests/cluster && PYTHONPATH="$PWD" exec nice -n 10 python3 -m localup prepare) >"$prepare_log" 2>&1 &
  else
    nice -n 10 bash tests/cluster/build_k8s.sh >"$prepare_log" 2>&1 &
  fi
  prepare_pid=$!
fi

export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MLFLOW_DISABLE_TELEMETRY=true
.venv/bin/python -m pytest "$@"
rc=$?
if [ -n "$prepare_pid" ]; then
  wait "$prepare_pid" || echo "test.sh: the background cluster preparation failed; see $prepare_log" >&2
  echo "test.sh: cluster preparation: $(tail -n 1 "$prepare_log")"
fi
echo "test.sh: total $((SECONDS - start)) s"
if [ "$rc" = 5 ]; then
  echo "error: pytest collected no tests; the suite must never be empty" >&2
  exit 1
fi
exit "$rc"
