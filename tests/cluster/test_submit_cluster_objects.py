"""`pipeline submit --host --namespace NS` against a reachable cluster (the real kube-apiserver): a
namespace without the run's Secret or ConfigMap fails in one line before any run is created, and the
contract the chart left in the namespace is the one the run is compiled with. The KFP API is a
minimal FAKE on 127.0.0.1 (healthz only: nothing may reach run creation here)."""
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from llamaops.cli.main import app
from llamaops.pipelines.cluster_objects import contract_for_run
from llamaops.platform.config.cluster import CLUSTER_CONFIGMAP, CLUSTER_KEY, ClusterContract, SecretRef

pytestmark = pytest.mark.cluster


class HealthOnly(BaseHTTPRequestHandler):
    posts: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        body = b"{}"
        self.send_response(200 if self.path.startswith("/apis/v2beta1/healthz") else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        self.posts.append(self.path)
        self.send_response(500)
        self.end_headers()


@pytest.fixture
def kfp_health():
    HealthOnly.posts = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), HealthOnly)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_namespace_without_the_runs_secret_fails_in_one_line_before_a_run_exists(k8s_namespace, kfp_health,
                                                                                   tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    result = CliRunner().invoke(app, ["pipeline", "submit", "tiny", "--host", kfp_health, "--namespace", k8s_namespace])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"error: namespace {k8s_namespace} lacks Secret llamaops-s3, Secret llamaops-mlflow-auth, ConfigMap "
        f"llamaops-platform, which the run's pods "
        f"read; install the chart with {k8s_namespace} in pipelines.namespaces, or create them"]
    assert HealthOnly.posts == []


def test_the_contract_in_the_namespace_is_the_one_a_run_uses(kube, k8s_namespace, tmp_path, monkeypatch):
    from kubernetes import client

    core = client.CoreV1Api(kube)
    contract = ClusterContract(serviceAccount="runner", platformConfigMap="ml-platform",
                               s3Secret=SecretRef(name="store", userKey="id", passwordKey="key"),
                               mlflowSecret=None)  # an external tracking server without auth
    core.create_namespaced_config_map(k8s_namespace, {"metadata": {"name": CLUSTER_CONFIGMAP},
                                                      "data": {CLUSTER_KEY: contract.model_dump_json()}})
    chosen, missing = contract_for_run(None, k8s_namespace)
    assert chosen == contract and missing == ["Secret store", "ConfigMap ml-platform"]

    core.create_namespaced_secret(k8s_namespace, {"metadata": {"name": "store"}, "stringData": {"id": "a"}})
    core.create_namespaced_config_map(k8s_namespace, {"metadata": {"name": "ml-platform"}, "data": {}})
    assert contract_for_run(None, k8s_namespace)[1] == ["key key of Secret store"]
    core.patch_namespaced_secret("store", k8s_namespace, {"stringData": {"key": "b"}})
    assert contract_for_run(None, k8s_namespace) == (contract, [])
    # An explicit contract wins over the namespace's; without a reachable cluster nothing is checked.
    assert contract_for_run(ClusterContract(), k8s_namespace)[0] == ClusterContract()
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    assert contract_for_run(None, k8s_namespace) == (ClusterContract(), [])
