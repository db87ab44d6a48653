"""PodSandbox through the REAL kubernetes client and a kubeconfig, against a STUB API server on
127.0.0.1 (a stand-in that answers the few requests a run makes; no admission, RBAC or kubelet):
the request paths, the namespace taken from the kubeconfig's context, the log read as raw text,
and the objects deleted afterwards."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from kubernetes import client

from llamaops.platform.eval.sandbox import SandboxLimits
from llamaops.platform.eval.sandbox_pod import PodSandbox

RESULT = {"outcomes": [{"status": "passed", "exit_code": 0, "seconds": 0.1, "output": "{'not': 'json'}\n"}]}


class StubApi(BaseHTTPRequestHandler):
    seen: list[tuple[str, str]] = []

    def log_message(self, *args) -> None:
        pass

    def _send(self, code: int, data: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append(("POST", self.path))
        if body["kind"] == "SelfSubjectAccessReview":
            body["status"] = {"allowed": True}
        self._send(201, json.dumps(body).encode())

    def do_GET(self) -> None:  # noqa: N802
        self.seen.append(("GET", self.path.split("?")[0]))
        if self.path.split("?")[0].endswith("/log"):  # raw text, as the kubelet serves it
            self._send(200, (json.dumps(RESULT) + "\n").encode())
        else:
            self._send(200, json.dumps({"kind": "Pod", "apiVersion": "v1", "status": {"phase": "Succeeded"}}).encode())

    def do_DELETE(self) -> None:  # noqa: N802
        self.seen.append(("DELETE", self.path.split("?")[0]))
        self._send(200, json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Success"}).encode())


@pytest.fixture
def stub_api(monkeypatch, tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), StubApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "stub",
        "clusters": [{"name": "stub", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "u", "namespace": "team-a"}}]}))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    saved = client.Configuration.get_default_copy()
    StubApi.seen = []
    yield StubApi.seen
    client.Configuration.set_default(saved)  # load_kube_config changed the process-wide default
    server.shutdown()


def test_a_run_through_the_real_client_stub_api(stub_api):
    outcomes = PodSandbox(image="llamaops:1")(["print(1)"], SandboxLimits())
    assert [(o.status, o.output) for o in outcomes] == [("passed", "{'not': 'json'}\n")]
    paths = [(verb, path) for verb, path in stub_api if "selfsubjectaccessreviews" not in path]
    pod = next(path for verb, path in paths if verb == "GET" and not path.endswith("/log"))
    assert paths == [
        ("POST", "/api/v1/namespaces/team-a/configmaps"), ("POST", "/api/v1/namespaces/team-a/pods"),
        ("GET", pod), ("GET", f"{pod}/log"), ("DELETE", pod),
        ("DELETE", pod.replace("/pods/", "/configmaps/") + "-0")]
    assert len(stub_api) - len(paths) == 6  # every permission checked before anything was created
