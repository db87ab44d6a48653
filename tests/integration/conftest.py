"""Real local services for integration tests, one per session, on free 127.0.0.1 ports.

- `s3_server`: SeaweedFS `weed mini` with a SigV4 identity (access/secret key) -> S3Server.
- `s3_bucket`: a fresh bucket on it, with LLAMAOPS_S3_ENDPOINT / AWS_* set for the test -> "s3://bucket".
- `mlflow_server`: `mlflow server` on sqlite + a local artifact directory -> MlflowServer.
Both servers are stopped by pid at the end of the session.
"""
import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from local_services import BIN, MlflowServer, S3Server, free_port, start_seaweedfs, stop, wait_until  # noqa: E402,F401


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    process, server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    try:
        yield server
    finally:
        stop(process)


@pytest.fixture
def s3_bucket(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    s3_server.client().make_bucket(bucket)
    return f"s3://{bucket}"


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    artifacts = root / "artifacts"
    log = root / "mlflow.log"
    command = [
        str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(artifacts),
    ]
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=root, env=env)
    uri = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                if response.status != 200:
                    return False
            # The worker opens its tracking store on the first API call (~10 s here): pay it now.
            with urllib.request.urlopen(f"{uri}/api/2.0/mlflow/experiments/search?max_results=1", timeout=90):
                return True
        except OSError:
            return False

    try:
        wait_until(healthy, process, log, timeout_s=120)
        yield MlflowServer(uri, artifacts)
    finally:
        stop(process)
