"""The pod tier: a real single-node Kubernetes that runs pods (tests/cluster/local-up), the one
llamaops image built from the Dockerfile on the node's own dockerd (FROM a base imported from
this host's Python: no registry), and a real S3 server (SeaweedFS) on the node's address.

Everything is session-scoped: one cluster, one image, one `helm install` for the whole tier.
Teardown runs tests/cluster/local-down and checks the host is as it was before local-up.
Timings and memory go to the terminal summary (provisioning, image, apply -> first answer).
"""
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

_TESTS = Path(__file__).resolve().parents[1]
for d in (_TESTS, _TESTS / "cluster", Path(__file__).resolve().parent):
    sys.path.insert(0, str(d))
from local_services import S3Server, start_seaweedfs, stop  # noqa: E402
from localup import host as localup_host  # noqa: E402
from localup.settings import CACHE, Settings  # noqa: E402
from pod_helpers import CLUSTER_DIR, REPORT, ROOT, cluster_rss_mib, run, wait_until  # noqa: E402

from llamaops.cluster.kind import KUBERAY_CHART_VERSION  # noqa: E402

IMAGE = "llamaops/llamaops:local"
RELEASE_NAMESPACE = "llamaops"  # the chart's, and the one its pipelines (and their RayJobs) run in


def _why_not_here() -> str | None:
    if sys.platform != "linux":
        return "the local node needs Linux"
    if os.geteuid() != 0:
        return "the local node needs root (it runs dockerd, a kubelet and iptables)"
    return None


@dataclass
class NodeCluster:
    settings: Settings
    kubeconfig: Path
    env: dict = field(default_factory=dict)  # KUBECONFIG for helm and the clients

    @property
    def node_ip(self) -> str:
        return self.settings.node_ip


@pytest.fixture(scope="session")
def node_cluster() -> Iterator[NodeCluster]:
    why = _why_not_here()
    if why:
        pytest.skip(why)
    # Start from a host without the cluster, so teardown can check that local-down restores it.
    run(CLUSTER_DIR / "local-down", timeout=600)
    before = localup_host.view_before_node()
    cached = all((CACHE / "bin" / b).exists() for b in ("kubelet", "kube-proxy", "kube-scheduler", "pause"))
    t0 = time.monotonic()
    out = subprocess.run([str(CLUSTER_DIR / "local-up")], capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        pytest.fail(f"local-up failed:\n{out.stderr[-4000:]}")
    REPORT["provision_s"] = time.monotonic() - t0
    REPORT["provision_kind"] = "cached binaries" if cached else "cold (binaries built)"
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith("export KUBECONFIG="), last
    kubeconfig = Path(last.split("=", 1)[1])
    cluster = NodeCluster(Settings(), kubeconfig, {**os.environ, "KUBECONFIG": str(kubeconfig)})
    try:
        yield cluster
    finally:
        REPORT.setdefault("cluster_rss_mib_at_teardown", cluster_rss_mib(cluster.settings.state))
        if os.environ.get("LLAMAOPS_KEEP_CLUSTER") != "1":
            down = subprocess.run([str(CLUSTER_DIR / "local-down")], capture_output=True, text=True, timeout=600)
            assert down.returncode == 0, f"local-down failed:\n{down.stderr[-3000:]}"
            changed = localup_host.view_differences(before, localup_host.host_view())
            assert not changed, "local-down left the host changed: " + "; ".join(changed)


@pytest.fixture(scope="session")
def kube(node_cluster: NodeCluster):
    from kubernetes import config

    return config.new_client_from_config(config_file=str(node_cluster.kubeconfig))


@pytest.fixture(scope="session")
def llamaops_image(node_cluster: NodeCluster) -> str:
    """The Dockerfile built on the node's dockerd FROM this host's Python (docker import)."""
    t0 = time.monotonic()
    env = {**os.environ, "DOCKER": "/usr/bin/docker", "DOCKER_HOST": f"unix://{node_cluster.settings.docker_sock}",
           "PYTHON": sys.executable}
    out = run("bash", ROOT / "scripts" / "build-image.sh", "--host-base", "--tag", IMAGE, env=env, timeout=1800)
    REPORT["image_build_s"] = time.monotonic() - t0
    assert out.stdout.strip().splitlines()[-1] == IMAGE
    return IMAGE


@pytest.fixture(scope="session")
def node_s3(node_cluster: NodeCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """SeaweedFS on the node's address: pods and the host reach it, nothing outside does."""
    process, server = start_seaweedfs(tmp_path_factory.mktemp("node-s3"), host=node_cluster.node_ip,
                                      readers=(NODE_S3_READER,))
    server.client().make_bucket("llamaops")
    try:
        yield server
    finally:
        stop(process)


@pytest.fixture(scope="session")
def helm() -> str:
    return run("bash", CLUSTER_DIR / "get_helm.sh").stdout.strip().splitlines()[-1]


def _publish_tiny_model(node_s3: S3Server, uri: str, seed: int) -> str:
    """A tiny random Llama with the real tokenizer's vocabulary, published to the node's S3."""
    from llamaops.platform.config.model import ModelConfig
    from llamaops.platform.model import Transformer
    from llamaops.platform.model.checkpoint import save_model
    from llamaops.platform.store.uri import staged_output

    model = Transformer(ModelConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_hidden_dim=128, max_seq_len=256))
    model.init_weights(seed=seed)
    with pytest.MonkeyPatch.context() as env:
        for name, value in node_s3.env().items():
            env.setenv(name, value)
        with staged_output(uri) as directory:
            save_model(model, directory, overwrite=True)
    return uri


@pytest.fixture(scope="session")
def tiny_model(node_s3: S3Server) -> str:
    return _publish_tiny_model(node_s3, "s3://llamaops/models/tiny", seed=0)


@pytest.fixture(scope="session")
def tiny_model_v2(node_s3: S3Server) -> str:
    """The same shape with other weights: its answers tell which version served a request."""
    return _publish_tiny_model(node_s3, "s3://llamaops/models/tiny-v2", seed=1)


# The chart's read-only component (operator, helm test) gets a key that may only read.
NODE_S3_READER = S3Server("", "llamaops-reader", f"reader-{os.urandom(8).hex()}")


@dataclass(frozen=True)
class Release:
    name: str
    namespace: str
    s3_secret: str


@pytest.fixture(scope="session")
def release(node_cluster, kube, llamaops_image, node_s3, helm) -> Iterator[Release]:
    """`helm install --wait` of the chart: the operator and MLflow on the llamaops image, the
    node's S3 as the external object store, MLflow on sqlite in its emptyDir."""
    from kubernetes import client

    core = client.CoreV1Api(kube)
    ns = RELEASE_NAMESPACE
    for name in (ns, *APP_NAMESPACES):  # the operator's Roles go into namespaces that exist
        core.create_namespace({"metadata": {"name": name}})
    core.create_namespaced_secret(ns, {"metadata": {"name": "s3-creds"}, "stringData": {
        "access-key": node_s3.access_key, "secret-key": node_s3.secret_key}})
    core.create_namespaced_secret(ns, {"metadata": {"name": "s3-reader"}, "stringData": {
        "access-key": NODE_S3_READER.access_key, "secret-key": NODE_S3_READER.secret_key}})
    core.create_namespaced_secret(ns, {"metadata": {"name": "mlflow-db"}, "stringData": {
        "uri": "sqlite:////tmp/mlflow.db"}})
    repo, tag = llamaops_image.split(":")
    values = {
        "image": {"repository": repo, "tag": tag, "pullPolicy": "Never"},
        "operator": {"servingImage": llamaops_image, "resyncSeconds": 15, "watchNamespaces": list(APP_NAMESPACES)},
        # The local cluster's Service addresses (from 198.18.0.0/15) are not private ones MLflow knows.
        "mlflow": {"image": {"repository": repo, "tag": tag}, "database": {"existingSecret": "mlflow-db"},
                   "allowedHosts": [".".join(node_cluster.settings.service_cidr.split(".")[:2]) + ".*"]},
        "s3": {"existingSecret": "s3-creds", "componentSecrets": {"reader": "s3-reader"},
               "external": {"enabled": True, "endpoint": node_s3.endpoint}},
        # Small CPU pods: a RayJob's head, two workers and its submitter fit the node's two CPUs.
        "pipelines": {"cpuPod": {"cpus": 0.25, "memoryGiB": 3}},
        "nodePools": {
            "local": {"nodeSelector": {"llamaops.io/pool": "local"}, "tolerations": [], "gpusPerNode": 0},
            "nowhere": {"nodeSelector": {"llamaops.io/pool": "nowhere"}, "tolerations": [], "gpusPerNode": 0},
        },
    }
    values_file = node_cluster.settings.path("test-values.json")
    values_file.write_text(json.dumps(values))
    t0 = time.monotonic()
    run(helm, "install", "r", ROOT / "charts" / "llamaops", "-n", ns, "-f", values_file,
        "--wait", "--timeout", "10m", env=node_cluster.env, timeout=900)
    REPORT["helm_install_ready_s"] = time.monotonic() - t0
    yield Release("r", ns, "s3-creds")
    run(helm, "uninstall", "r", "-n", ns, "--wait", "--timeout", "5m", env=node_cluster.env, check=False, timeout=400)


# Namespaces users put LlamaDeployments in: the operator watches exactly these (and the release's).
APP_NAMESPACES = ("app-1", "app-2", "app-3", "app-4", "app-5", "app-6")
_unused_app_namespaces = list(APP_NAMESPACES)


@pytest.fixture
def app_namespace(kube, release, node_s3) -> Iterator[str]:
    """A fresh namespace the operator watches, for LlamaDeployments, with the storage Secret their
    pods read (never handed out twice). Its LlamaDeployments go afterwards; the namespace stays, so
    the operator never watches a namespace whose Role is gone."""
    from kubernetes import client

    from llamaops.operators.spec import GROUP, PLURAL, VERSION

    core = client.CoreV1Api(kube)
    assert _unused_app_namespaces, "every watched app namespace is used: add one to APP_NAMESPACES"
    name = _unused_app_namespaces.pop(0)
    core.create_namespaced_secret(name, {"metadata": {"name": "model-store"}, "stringData": {
        "access-key": node_s3.access_key, "secret-key": node_s3.secret_key}})
    try:
        yield name
    finally:
        client.CustomObjectsApi(kube).delete_collection_namespaced_custom_object(GROUP, VERSION, name, PLURAL)


POOL_LABEL = "llamaops.io/pool"


@pytest.fixture(scope="module")
def local_pool(kube, node_cluster):
    """Puts the node into the `local` pool the release's values configure."""
    from kubernetes import client

    core = client.CoreV1Api(kube)
    core.patch_node(node_cluster.settings.node_name, {"metadata": {"labels": {POOL_LABEL: "local"}}})
    yield "local"
    core.patch_node(node_cluster.settings.node_name, {"metadata": {"labels": {POOL_LABEL: None}}})


@pytest.fixture(scope="session")
def kuberay_stand_in(node_cluster: NodeCluster, kube):
    """KubeRay's RayJob controller played by kuberay_stand_in.py (KubeRay's image cannot be pulled here)
    on the RayJob CRD (tests/cluster/crds), as the KubeRay release llamaops installs
    (cluster/kind.py), watching the namespace `rayjobs`, which it creates, and the release's (its
    pipelines' RayJobs)."""
    import yaml
    from kuberay_stand_in import KubeRayStandIn
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    crds = client.ApiextensionsV1Api(kube)
    try:
        crds.create_custom_resource_definition(yaml.safe_load((CLUSTER_DIR / "crds" / "rayjob-minimal.yaml").read_text()))
    except ApiException as error:
        if error.status != 409:
            raise
    wait_until("the RayJob CRD Established", lambda: (any(
        c.type == "Established" and c.status == "True"
        for c in crds.read_custom_resource_definition("rayjobs.ray.io").status.conditions or []), None), 30, every=0.2)
    client.CoreV1Api(kube).create_namespace({"metadata": {"name": "rayjobs"}})
    # Its own ApiClient: it runs on another thread than the tests' calls.
    kuberay = tuple(int(part) for part in KUBERAY_CHART_VERSION.split("."))
    stand_in = KubeRayStandIn(config.new_client_from_config(config_file=str(node_cluster.kubeconfig)),
                              ["rayjobs", RELEASE_NAMESPACE], kuberay_version=kuberay)
    stand_in.start()
    yield stand_in
    stand_in.stop()


def pytest_terminal_summary(terminalreporter) -> None:
    if REPORT:
        terminalreporter.section("pod tier: provisioning and latency")
        for key, value in REPORT.items():
            terminalreporter.write_line(f"{key}: {value:.1f}" if isinstance(value, float) else f"{key}: {value}")
