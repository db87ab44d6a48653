"""Real local services for integration tests, one per session, on free 127.0.0.1 ports.

- `s3_server`: SeaweedFS `weed mini` with a SigV4 identity (access/secret key) -> S3Server.
- `s3_bucket`: a fresh bucket on it, with LLAMAOPS_S3_ENDPOINT / AWS_* set for the test -> "s3://bucket".
- `mlflow_server`: `mlflow server` on sqlite + a local artifact directory -> MlflowServer.
Both servers are stopped by pid at the end of the session.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class S3Server:
    endpoint: str  # http://127.0.0.1:PORT
    access_key: str
    secret_key: str
    region: str = "us-east-1"

    def env(self) -> dict[str, str]:
        return {
            "LLAMAOPS_S3_ENDPOINT": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
        }

    def client(self):
        from minio import Minio

        return Minio(self.endpoint.removeprefix("http://"), access_key=self.access_key,
                     secret_key=self.secret_key, secure=False, region=self.region)


@dataclass(frozen=True)
class MlflowServer:
    uri: str  # http://127.0.0.1:PORT
    artifacts_dir: Path


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _free_ports_with_grpc(count: int) -> list[int]:
    """Ports P whose P+10000 is free too: weed derives each gRPC port that way."""
    ports: list[int] = []
    candidate = 20000 + os.getpid() % 7000
    while len(ports) < count:
        candidate += 7
        if candidate > 30000:
            candidate = 20000
        if candidate not in ports and _bindable(candidate) and _bindable(candidate + 10000):
            ports.append(candidate)
    return ports


def _wait_until(ready: Callable[[], bool], process: subprocess.Popen, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}; log: {log}\n{log.read_text()[-3000:]}")
        if ready():
            return
        time.sleep(0.25)
    _stop(process)
    raise RuntimeError(f"server not ready after {timeout_s:.0f}s; log: {log}\n{log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    root = tmp_path_factory.mktemp("seaweedfs")
    access_key, secret_key = "llamaops-test", uuid.uuid4().hex
    identity = {"name": "llamaops", "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"]}
    (root / "s3.json").write_text(json.dumps({"identities": [identity]}))
    (root / "data").mkdir()
    master, volume, filer, s3, admin = _free_ports_with_grpc(5)
    log = root / "weed.log"
    command = [
        str(BIN / "weed"), "mini", f"-dir={root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-s3.config={root / 's3.json'}", "-admin.ui=false", "-webdav=false",
        f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}", f"-s3.port={s3}",
        f"-admin.port={admin}", "-s3.port.iceberg=0", "-s3.port.lance=0",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=root)
    server = S3Server(f"http://127.0.0.1:{s3}", access_key, secret_key)
    client = server.client()

    def answers() -> bool:
        try:
            client.list_buckets()
            return True
        except Exception:
            return False

    try:
        _wait_until(answers, process, log, timeout_s=60)
        yield server
    finally:
        _stop(process)


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
    port = _free_port()
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
        _wait_until(healthy, process, log, timeout_s=120)
        yield MlflowServer(uri, artifacts)
    finally:
        _stop(process)
