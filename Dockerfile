# The one llamaops image: the CLI, every pipeline step, the operator and the inference server.
# Built by scripts/build-image.sh, which prepares the context (the wheels of every runtime
# dependency, pinned by constraints.txt, and the llamaops wheel) so the build itself needs no
# network. Real clusters build FROM python:3.11-slim-bookworm; tests/pods builds the same file
# FROM a base imported from the host's Python (`docker import`), since no registry is reachable.
ARG BASE=python:3.11-slim-bookworm

# Dependencies in a build stage, so the wheels never reach the final image; the venv layer is
# reused until constraints.txt changes.
FROM ${BASE} AS deps
COPY deps/ /deps/
RUN python3 -m venv --without-pip /opt/llamaops \
 && /opt/llamaops/bin/python /deps/pip.whl/pip install --no-index --no-cache-dir -q \
      --disable-pip-version-check --find-links /deps -r /deps/requirements.txt

FROM ${BASE}
ENV PATH=/opt/llamaops/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/tmp LLAMAOPS_HOME=/tmp/llamaops PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    MLFLOW_DISABLE_TELEMETRY=true
# Pods run under uids with no passwd entry; getpass (kopf's peering id) reads these first.
ENV USER=llamaops LOGNAME=llamaops

COPY --from=deps /opt/llamaops /opt/llamaops
# Data packages the steps read in place (platform/data/packages.py: <venv>/llamaops-data).
COPY data/ /opt/llamaops/llamaops-data/
# Only these layers change from one commit to the next (the commit MLflow runs record as their
# source, the llamaops wheel and pip to install it).
ARG LLAMAOPS_GIT_COMMIT=""
ENV LLAMAOPS_GIT_COMMIT=${LLAMAOPS_GIT_COMMIT}
COPY llamaops/ /src/
RUN /opt/llamaops/bin/python /src/pip.whl/pip install --no-index --no-deps --no-cache-dir -q \
      --disable-pip-version-check /src/llamaops-*.whl

# A numeric non-root user, so `runAsNonRoot: true` can be verified by the kubelet.
USER 65532:65532
WORKDIR /tmp
CMD ["llamaops", "--help"]
