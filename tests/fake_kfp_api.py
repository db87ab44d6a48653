"""A FAKE Kubeflow Pipelines v2 HTTP API on 127.0.0.1, the stand-in for the KFP backend's API server
(Argo, MySQL, MinIO and their images cannot run on this machine): it checks the bearer token and
records exactly what the real kfp.Client sent. Its runs answer with canned task details."""
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "good-token"


class FakeKfp(BaseHTTPRequestHandler):
    requests: list = []
    experiments: dict = {}
    runs: dict = {}

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._send(401, {"error": "Unauthenticated", "code": 16, "message": "bad token"})
            return False
        return True

    def do_GET(self):
        self.requests.append(("GET", self.path, None))
        if not self._authorized():
            return
        path = self.path.split("?")[0]
        if path == "/apis/v2beta1/healthz":
            return self._send(200, {"multi_user": False})
        if path == "/apis/v2beta1/experiments":
            return self._send(200, {"experiments": list(self.experiments.values()), "total_size": len(self.experiments)})
        match = re.fullmatch(r"/apis/v2beta1/runs/([\w-]+)", path)
        if match:
            run = self.runs.get(match.group(1))
            return self._send(200, run) if run else self._send(404, {"error": "not found", "code": 5, "message": "not found"})
        self._send(404, {"error": f"no route {path}", "code": 5, "message": f"no route {path}"})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        self.requests.append(("POST", self.path, body))
        if not self._authorized():
            return
        path = self.path.split("?")[0]
        if path == "/apis/v2beta1/experiments":
            experiment = {**body, "experiment_id": f"exp-{len(self.experiments) + 1}"}
            self.experiments[experiment["experiment_id"]] = experiment
            return self._send(200, experiment)
        if path == "/apis/v2beta1/runs":
            run_id = f"run-{len(self.runs) + 1}"
            run = {**body, "run_id": run_id, "state": "RUNNING", "run_details": {"task_details": [
                {"task_id": "t1", "display_name": "data", "state": "SUCCEEDED",
                 "child_tasks": [{"pod_name": "data-pod-1"}]},
                {"task_id": "t2", "display_name": "pretrain", "state": "FAILED",
                 "error": {"message": "RayJob ml/x-pretrain ended FAILED: OOM"}}]}}
            self.runs[run_id] = run
            return self._send(200, run)
        self._send(404, {"error": f"no route {path}", "code": 5, "message": f"no route {path}"})


@contextmanager
def fake_kfp_api() -> Iterator[type[FakeKfp]]:
    """The fake's handler class: `.url`, and what it recorded (`.requests`, `.experiments`, `.runs`)."""
    FakeKfp.requests, FakeKfp.experiments, FakeKfp.runs = [], {}, {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeKfp)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakeKfp.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield FakeKfp
    finally:
        server.shutdown()
        server.server_close()


def created_run(fake: type[FakeKfp]) -> dict:
    """The one create-run request the fake received."""
    (request,) = [body for method, path, body in fake.requests if method == "POST" and path == "/apis/v2beta1/runs"]
    return request
