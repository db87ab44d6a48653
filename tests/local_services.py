"""Local services shared by the test tiers: a real SigV4 S3 server (SeaweedFS `weed mini`)
and the small process helpers around it. Integration tests bind it to 127.0.0.1; the pod
tier binds it to the local node's address so pods can reach it."""
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

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


def _bindable(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _free_ports_with_grpc(count: int, host: str = "127.0.0.1") -> list[int]:
    """Ports P whose P+10000 is free too: weed derives each gRPC port that way. weed also names
    unix sockets /tmp/seaweedfs-*-P.sock after its ports, whatever the address, so a port another
    weed uses on any address is taken."""
    def taken(port: int) -> bool:
        return (any(Path("/tmp").glob(f"seaweedfs-*-{port}.sock"))
                or not all(_bindable(port, h) for h in {host, "127.0.0.1"}))

    ports: list[int] = []
    candidate = 20000 + random.randrange(7000)
    while len(ports) < count:
        candidate += 7
        if candidate > 30000:
            candidate = 20000
        if candidate not in ports and not taken(candidate) and not taken(candidate + 10000):
            ports.append(candidate)
    return ports


def wait_until(ready: Callable[[], bool], process: subprocess.Popen, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}; log: {log}\n{log.read_text()[-3000:]}")
        if ready():
            return
        time.sleep(0.25)
    stop(process)
    raise RuntimeError(f"server not ready after {timeout_s:.0f}s; log: {log}\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)




def start_seaweedfs(root: Path, host: str = "127.0.0.1", readers: tuple[S3Server, ...] = ()
                    ) -> tuple[subprocess.Popen, S3Server]:
    """`weed mini` with one SigV4 identity that may do everything (returned), plus the read-only
    identities of `readers`, on free ports of `host`; returns once S3 answers."""
    access_key, secret_key = "llamaops-test", uuid.uuid4().hex
    identity = {"name": "llamaops", "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"]}
    read_only = [{"name": f"reader-{i}", "credentials": [{"accessKey": r.access_key, "secretKey": r.secret_key}],
                  "actions": ["Read", "List"]} for i, r in enumerate(readers)]
    (root / "s3.json").write_text(json.dumps({"identities": [identity, *read_only]}))
    (root / "data").mkdir()
    master, volume, filer, s3, admin = _free_ports_with_grpc(5, host)
    log = root / "weed.log"
    command = [
        str(BIN / "weed"), "mini", f"-dir={root / 'data'}", f"-ip={host}", f"-ip.bind={host}",
        f"-s3.config={root / 's3.json'}", "-admin.ui=false", "-webdav=false",
        f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}", f"-s3.port={s3}",
        f"-admin.port={admin}", "-s3.port.iceberg=0", "-s3.port.lance=0",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=root)
    server = S3Server(f"http://{host}:{s3}", access_key, secret_key)
    client = server.client()

    def answers() -> bool:
        try:
            client.list_buckets()
            return True
        except Exception:
            return False

    wait_until(answers, process, log, timeout_s=60)
    return process, server
