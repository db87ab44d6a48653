"""A real kube-apiserver (+ etcd + kube-controller-manager) per test session.

`k8s_cluster` builds or reuses the cached binaries (tests/cluster/build_k8s.sh) and starts them
on free 127.0.0.1 ports; `k8s_namespace` gives each test a fresh namespace; `kube` is a
kubernetes ApiClient bound to the cluster. There is no kubelet or scheduler: pods stay Pending.
"""
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from apiserver import TestCluster, prerequisites_missing, start_cluster  # noqa: E402


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
