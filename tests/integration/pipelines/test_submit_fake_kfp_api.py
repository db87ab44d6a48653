"""`llamaops pipeline submit --host / status / logs` through the real kfp.Client against a FAKE
Kubeflow Pipelines HTTP API on 127.0.0.1: the KFP backend (Argo, MySQL, MinIO, its images)
cannot run on this machine. The fake checks the bearer token and records what the client sent."""
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from typer.testing import CliRunner

from llamaops.cli.main import app

TOKEN = "good-token"
runner = CliRunner()


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


@pytest.fixture
def fake_kfp():
    FakeKfp.requests, FakeKfp.experiments, FakeKfp.runs = [], {}, {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeKfp)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMAOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.config/kfp/context.json from the user
    monkeypatch.delenv("KFP_TOKEN", raising=False)


def test_submit_creates_experiment_and_run_then_status_and_logs_follow_it(fake_kfp, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    result = runner.invoke(app, ["pipeline", "submit", "tiny", "--host", fake_kfp, "--token-file", str(token_file),
                                 "--namespace", "team-a", "--experiment", "llama-exp"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "run run-1 submitted to experiment llama-exp"
    assert lines[1] == f"{fake_kfp}/#/runs/details/run-1"
    (experiment,) = FakeKfp.experiments.values()
    assert experiment["display_name"] == "llama-exp" and experiment["namespace"] == "team-a"
    run = FakeKfp.runs["run-1"]
    assert run["experiment_id"] == experiment["experiment_id"]
    assert run["pipeline_spec"]["pipelineInfo"]["name"] == "llamaops-lifecycle-tiny"
    assert run["runtime_config"]["parameters"]["run_id"].startswith("tiny-")

    status = runner.invoke(app, ["pipeline", "status", "run-1", "--host", fake_kfp, "--token", TOKEN])
    assert status.exit_code == 0, status.output
    assert status.stdout.strip() == "run run-1 RUNNING"
    logs = runner.invoke(app, ["pipeline", "logs", "run-1", "--host", fake_kfp, "--token", TOKEN])
    assert logs.exit_code == 0, logs.output
    assert logs.stdout.strip().splitlines() == [
        "data  SUCCEEDED  pod data-pod-1", "pretrain  FAILED  error: RayJob ml/x-pretrain ended FAILED: OOM"]
    missing = runner.invoke(app, ["pipeline", "status", "run-9", "--host", fake_kfp, "--token", TOKEN])
    assert missing.exit_code == 2 and "no run run-9" in missing.stderr


def test_rejected_token_fails_in_one_line_before_compiling(fake_kfp, monkeypatch):
    import llamaops.pipelines.lifecycle as lifecycle

    monkeypatch.setattr(lifecycle, "compile_pipeline", lambda *a: pytest.fail("compiled before the token was checked"))
    result = runner.invoke(app, ["pipeline", "submit", "tiny", "--host", fake_kfp, "--token", "wrong"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"error: KFP at {fake_kfp} rejected the token (HTTP 401); pass a valid --token or --token-file"]
    assert [(method, path) for method, path, _ in FakeKfp.requests] == [("GET", "/apis/v2beta1/healthz")]
    assert not FakeKfp.runs
