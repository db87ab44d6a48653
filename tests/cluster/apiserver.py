"""Start a real etcd + kube-apiserver (+ kube-controller-manager) on 127.0.0.1.

Binaries come from build_k8s.sh (cached under ~/.cache/llamaops/k8s). Every port is
free-picked, every cert self-made, so several engineers can run this at once.
Usable from the command line too: `python tests/cluster/apiserver.py` starts a
cluster, prints the kubeconfig path and waits for Ctrl-C.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from localup import pki

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "build_k8s.sh"
CACHE = Path(os.environ.get("LLAMAOPS_K8S_CACHE", Path.home() / ".cache/llamaops/k8s"))
ADMIN_TOKEN = "llamaops-admin-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_binaries(timeout: float = 1800) -> Path:
    """Build (cold, minutes) or reuse (cached, instant) the binaries; returns the bin dir."""
    out = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "LLAMAOPS_K8S_CACHE": str(CACHE)},
    )
    if out.returncode != 0:
        raise RuntimeError(f"build_k8s.sh failed:\n{out.stderr[-3000:]}")
    return Path(out.stdout.strip().splitlines()[-1])


def prerequisites_missing() -> str | None:
    """Why the binaries cannot be built here, or None."""
    bin_dir = CACHE / "bin"
    if all((bin_dir / b).exists() for b in ("kube-apiserver", "kube-controller-manager", "etcd")):
        return None
    for tool in ("apt-get", "dpkg-deb", "openssl", "tar"):
        if shutil.which(tool) is None:
            return f"{tool} not found: cannot build kube-apiserver from Debian source"
    return None


def make_certs(d: Path) -> None:
    """CA, serving cert for 127.0.0.1, admin client cert, service-account key pair, admin token."""
    pki.make_ca(d)
    pki.issue(d, "server", "/CN=kube-apiserver", client=False,
              sans=("IP:127.0.0.1", "DNS:localhost", "IP:198.18.0.1"))
    pki.issue(d, "admin", "/O=system:masters/CN=admin")
    pki.make_service_account_keys(d)
    (d / "tokens.csv").write_text(f"{ADMIN_TOKEN},admin,admin,system:masters\n")


def write_kubeconfig(d: Path, server: str) -> Path:
    return pki.kubeconfig(d / "kubeconfig", server, d, "admin")


@dataclass
class TestCluster:
    workdir: Path
    server: str = ""
    kubeconfig: Path | None = None
    procs: list[subprocess.Popen] = field(default_factory=list)
    owns_workdir: bool = False

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "w")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(p)
        return p

    def start(self, bin_dir: Path, controller_manager: bool = True, timeout: float = 60) -> "TestCluster":
        d = self.workdir
        make_certs(d)
        etcd_client, etcd_peer, port = free_port(), free_port(), free_port()
        self._spawn("etcd", [
            str(bin_dir / "etcd"), "--data-dir", str(d / "etcd"), "--name", "test",
            "--listen-client-urls", f"http://127.0.0.1:{etcd_client}",
            "--advertise-client-urls", f"http://127.0.0.1:{etcd_client}",
            "--listen-peer-urls", f"http://127.0.0.1:{etcd_peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{etcd_peer}",
            "--initial-cluster", f"test=http://127.0.0.1:{etcd_peer}",
            "--unsafe-no-fsync",
        ])
        self._spawn("kube-apiserver", [
            str(bin_dir / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{etcd_client}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={port}", "--insecure-port=0",
            f"--tls-cert-file={d / 'server.crt'}", f"--tls-private-key-file={d / 'server.key'}",
            f"--client-ca-file={d / 'ca.crt'}", f"--token-auth-file={d / 'tokens.csv'}",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={d / 'sa.pub'}",
            f"--service-account-signing-key-file={d / 'sa.key'}",
            "--service-cluster-ip-range=198.18.0.0/24",
            "--authorization-mode=RBAC",
            "--disable-admission-plugins=ServiceAccount",
            f"--cert-dir={d / 'apiserver-certs'}",
        ])
        self.server = f"https://127.0.0.1:{port}"
        self.kubeconfig = write_kubeconfig(d, self.server)
        self._wait_ready(timeout)
        if controller_manager:
            self._spawn("kube-controller-manager", [
                str(bin_dir / "kube-controller-manager"),
                f"--kubeconfig={self.kubeconfig}", f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                "--bind-address=127.0.0.1", f"--secure-port={free_port()}", "--port=0",
                "--leader-elect=false", "--use-service-account-credentials=false",
                f"--service-account-private-key-file={d / 'sa.key'}",
                f"--root-ca-file={d / 'ca.crt'}",
                f"--cert-dir={d / 'kcm-certs'}",
                "--controllers=*,-nodeipam,-nodelifecycle,-attachdetach,"
                "-persistentvolume-binder,-cloud-node-lifecycle",
            ])
        return self

    def _wait_ready(self, timeout: float) -> None:
        ctx = ssl.create_default_context(cafile=str(self.workdir / "ca.crt"))
        req = urllib.request.Request(f"{self.server}/readyz",
                                     headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        deadline, last = time.monotonic() + timeout, ""
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.procs):
                break
            try:
                with urllib.request.urlopen(req, context=ctx, timeout=2) as r:
                    if r.status == 200:
                        return
            except Exception as e:  # noqa: BLE001 - still starting
                last = str(e)
            time.sleep(0.3)
        logs = "".join(f"--- {log.name}:\n{log.read_text()[-1500:]}\n" for log in self.workdir.glob("*.log"))
        self.stop()
        raise RuntimeError(f"kube-apiserver not ready ({last}):\n{logs}")

    def stop(self) -> None:
        # Reverse order: the apiserver must go before etcd; it may need a second SIGTERM.
        for p in reversed(self.procs):
            for _ in range(2):
                if p.poll() is not None:
                    break
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    continue
            if p.poll() is None:
                p.kill()
                p.wait()
        self.procs.clear()
        if self.owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def start_cluster(controller_manager: bool = True) -> TestCluster:
    bin_dir = build_binaries()
    wd = Path(tempfile.mkdtemp(prefix="llamaops-k8s-"))
    return TestCluster(workdir=wd, owns_workdir=True).start(bin_dir, controller_manager)


if __name__ == "__main__":
    cluster = start_cluster()
    print(f"export KUBECONFIG={cluster.kubeconfig}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()
