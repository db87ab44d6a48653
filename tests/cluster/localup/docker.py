"""A private dockerd for the kubelet's dockershim, and images made without any registry."""
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

from . import procs
from .settings import Settings

DOCKER_CLI = "/usr/bin/docker"  # the 20.10 client matching dockerd (a newer one may sit first on PATH)
RUNTIME = "llamaops-runc"
# Root on these VMs lacks CAP_SYS_RESOURCE: a negative oom_score_adj (dockershim gives every
# sandbox -998) makes runc fail with "can't get final child's PID from pipe". Clamp it to 0.
RUNC_WRAPPER = """#!/bin/sh
prev=""
for a in "$@"; do
  case "$prev" in --bundle|-b) [ -f "$a/config.json" ] && sed -i 's/"oomScoreAdj":-[0-9]*/"oomScoreAdj":0/' "$a/config.json" ;;
                  --process|-p) [ -f "$a" ] && sed -i 's/"oomScoreAdj":-[0-9]*/"oomScoreAdj":0/' "$a" ;; esac
  prev="$a"
done
exec /usr/sbin/runc "$@"
"""


def env(s: Settings) -> dict:
    return {**os.environ, "DOCKER_HOST": f"unix://{s.docker_sock}"}


def cli(s: Settings, *args: str, input: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([DOCKER_CLI, *args], env=env(s), input=input, capture_output=True)
    if check and out.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:2])}: {out.stderr.decode(errors='replace').strip()[-500:]}")
    return out


def start(s: Settings, timeout: float = 60) -> None:
    if procs.running(s.state, "dockerd"):
        return
    wrapper = s.path("runc-wrapper")
    wrapper.write_text(RUNC_WRAPPER)
    wrapper.chmod(0o755)
    s.docker_root.mkdir(parents=True, exist_ok=True)
    procs.spawn(s.state, "dockerd", [
        "/usr/sbin/dockerd", "-H", f"unix://{s.docker_sock}",
        "--data-root", str(s.docker_root), "--exec-root", str(s.path("docker-exec")),
        "--pidfile", str(s.path("dockerd.pid")),
        # No bridge and no iptables of docker's own: the CNI bridge and kube-proxy own networking.
        "--iptables=false", "--ip6tables=false", "--ip-masq=false", "--bridge=none",
        "--exec-opt", "native.cgroupdriver=cgroupfs", "--storage-driver=overlay2",
        "--add-runtime", f"{RUNTIME}={wrapper}", f"--default-runtime={RUNTIME}",
        "--log-level=warn",
    ])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cli(s, "version", check=False).returncode == 0:
            return
        if not procs.running(s.state, "dockerd"):
            break
        time.sleep(0.3)
    raise RuntimeError(f"dockerd did not start:\n{procs.log_tail(s.state, 'dockerd')}")


def has_image(s: Settings, ref: str) -> bool:
    return cli(s, "image", "inspect", ref, check=False).returncode == 0


def import_rootfs(s: Settings, rootfs: Path, ref: str, changes: list[str]) -> None:
    """`docker import` of a directory: how an image is made here without pulling anything."""
    with tempfile.TemporaryFile() as tar:
        with tarfile.open(fileobj=tar, mode="w") as t:
            for child in sorted(rootfs.iterdir()):
                t.add(child, arcname=child.name)
        tar.seek(0)
        args = ["import"] + [a for c in changes for a in ("-c", c)] + ["-", ref]
        cli(s, *args, input=tar.read())


def ensure_pause_image(s: Settings, pause_binary: Path) -> None:
    if has_image(s, s.pause_image):
        return
    root = Path(tempfile.mkdtemp(prefix="pause-rootfs-"))
    try:
        shutil.copy2(pause_binary, root / "pause")
        import_rootfs(s, root, s.pause_image, ['ENTRYPOINT ["/pause"]'])
    finally:
        shutil.rmtree(root)


def remove_all_containers(s: Settings) -> None:
    ids = cli(s, "ps", "-aq", check=False).stdout.decode().split()
    if ids:
        cli(s, "rm", "-f", *ids, check=False)
