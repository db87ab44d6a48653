"""local-up / local-down: bring the single-node cluster up (idempotent) or tear it down and
restore every host change (idempotent). Run as root: it starts dockerd, a kubelet and iptables.

  python3 -m localup up       # ... prints `export KUBECONFIG=...` as its last line
  python3 -m localup down
  python3 -m localup prepare  # only install the packages and build the binaries (the slow part)
  python3 -m localup with-docker CMD...  # CMD against a dockerd on the node's image store, while no
                                         # cluster is up (builds an image ahead of `up`)
"""
import fcntl
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from . import components, docker, host, pki, procs
from .api import Api, answers_200, node_ready, wait_for
from .packages import install_packages
from .settings import CACHE, DOCKER_LOCK, Settings

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE.parent / "build_k8s.sh"
# Start order; local-down stops them in reverse (the apiserver before etcd).
CONTROL_PLANE = ("etcd", "kube-apiserver")
NODE = ("cluster-dns", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy")


def say(msg: str) -> None:
    print(f"local-up: {msg}", file=sys.stderr, flush=True)


def build_binaries() -> Path:
    say("building or reusing the Kubernetes binaries (cold: ~10 min)")
    out = subprocess.run(["bash", str(BUILD_SCRIPT), "--node"], stdout=subprocess.PIPE, text=True)
    if out.returncode != 0:
        raise RuntimeError("build_k8s.sh --node failed (its output is above)")
    return Path(out.stdout.strip().splitlines()[-1])


def make_pki(s: Settings, server: str) -> None:
    d = s.path("pki")
    if (d / "ca.crt").exists():
        return
    d.mkdir(parents=True)
    pki.make_ca(d)
    pki.issue(d, "apiserver", "/CN=kube-apiserver", client=False, sans=(
        "IP:127.0.0.1", f"IP:{s.node_ip}", f"IP:{s.service_ip}", "DNS:localhost", "DNS:kubernetes",
        "DNS:kubernetes.default", "DNS:kubernetes.default.svc", "DNS:kubernetes.default.svc.cluster.local"))
    pki.issue(d, "kubelet", f"/CN={s.node_name}", client=False,
              sans=(f"IP:{s.node_ip}", "IP:127.0.0.1", f"DNS:{s.node_name}"))
    users = {
        "admin": "/O=system:masters/CN=admin",
        "apiserver-kubelet-client": "/O=system:masters/CN=kube-apiserver-kubelet-client",
        "kcm": "/CN=system:kube-controller-manager",
        "scheduler": "/CN=system:kube-scheduler",
        "kube-proxy": "/CN=system:kube-proxy",
        "kubelet-client": f"/O=system:nodes/CN=system:node:{s.node_name}",
    }
    for user, subject in users.items():
        pki.issue(d, user, subject)
    pki.make_service_account_keys(d)
    pki.kubeconfig(s.kubeconfig, server, d, "admin")
    for user, file in (("kcm", "kcm"), ("scheduler", "scheduler"), ("kube-proxy", "kube-proxy"),
                       ("kubelet-client", "kubelet")):
        pki.kubeconfig(s.path(f"{file}.kubeconfig"), server, d, user)


def healthy(s: Settings) -> bool:
    if not s.kubeconfig.exists() or not all(procs.running(s.state, n) for n in (*CONTROL_PLANE, *NODE, "dockerd")):
        return False
    api = Api(s.path("server").read_text().strip(), s.path("pki"))
    return node_ready(api, s.node_name)[0]


@contextmanager
def image_store_lock() -> Iterator[None]:
    """One dockerd at a time on the image store (`Settings.docker_root`): `up` and `down` hold it
    while they start or stop the cluster's, `with-docker` while its command runs (and stays off
    the store while a cluster is up)."""
    DOCKER_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with DOCKER_LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def up(s: Settings) -> None:
    with image_store_lock():
        _up(s)


def _up(s: Settings) -> None:
    t0 = time.monotonic()
    if healthy(s):
        say("already up")
        print(f"export KUBECONFIG={s.kubeconfig}")
        return
    if s.state.exists():
        say("a previous cluster is partly up: tearing it down first")
        _down(s)
    install_packages(say)
    bin_dir = build_binaries()
    t_build = time.monotonic() - t0
    s.state.mkdir(parents=True)
    record = host.HostRecord(s.path("host.json"))
    record.take_snapshot()
    host.ensure_node_link(record, s.node_link, s.node_ip)
    host.ensure_pod_bridge(record, s.pod_bridge, f"{s.pod_gateway}/{s.pod_subnet.split('/')[1]}", s.service_cidr)
    host.set_sysctl("net.ipv4.ip_forward", "1")
    host.set_sysctl("net.bridge.bridge-nf-call-iptables", "1")  # Service DNAT for bridged pod traffic
    host.isolate_pod_network(s.pod_bridge)

    port = components.free_port(s.node_ip)
    server = f"https://{s.node_ip}:{port}"
    s.path("server").write_text(server)
    make_pki(s, server)
    docker.start(s)
    docker.ensure_pause_image(s, bin_dir / "pause")

    etcd_port = components.free_port()
    procs.spawn(s.state, "etcd", components.etcd(bin_dir, s, etcd_port))
    procs.spawn(s.state, "kube-apiserver", components.apiserver(bin_dir, s, etcd_port, port))
    api = Api(server, s.path("pki"))
    # /readyz includes the RBAC bootstrap: the controller manager must start only after it.
    wait_for("kube-apiserver /readyz", lambda: answers_200(api, "/readyz"), 90,
             lambda: procs.log_tail(s.state, "kube-apiserver"))
    procs.spawn(s.state, "cluster-dns", components.cluster_dns(s), env={"PYTHONPATH": str(HERE.parent)})
    for name, argv in (("kube-controller-manager", components.controller_manager(bin_dir, s)),
                       ("kube-scheduler", components.scheduler(bin_dir, s)),
                       ("kubelet", components.kubelet(bin_dir, s)),
                       ("kube-proxy", components.kube_proxy(bin_dir, s))):
        procs.spawn(s.state, name, argv)
    wait_for(f"node {s.node_name} Ready", lambda: node_ready(api, s.node_name), 120,
             lambda: procs.log_tail(s.state, "kubelet"))
    # Pods need the default ServiceAccount (ServiceAccount admission): made by the controller manager.
    wait_for("the default ServiceAccount",
             lambda: answers_200(api, "/api/v1/namespaces/default/serviceaccounts/default"), 60,
             lambda: procs.log_tail(s.state, "kube-controller-manager"))
    say(f"node Ready in {time.monotonic() - t0:.1f}s (binaries {t_build:.1f}s); logs in {s.path('logs')}")
    print(f"export KUBECONFIG={s.kubeconfig}")


def prepare(s: Settings) -> None:
    """The slow, host-wide part of a cold `up`, with no host change a `down` must undo."""
    t0 = time.monotonic()
    install_packages(say)
    build_binaries()
    say(f"packages and binaries ready in {time.monotonic() - t0:.1f}s")


def with_docker(s: Settings, command: list[str]) -> int:
    """Run `command` with DOCKER_HOST on a dockerd of its own over the cluster's image store, then
    stop that dockerd: images it builds are in the store when `up` starts. Skipped (0) while a
    cluster is up, whose dockerd owns the store."""
    install_packages(say)
    with image_store_lock():
        if s.state.exists():
            say(f"a cluster is up ({s.state}): not starting a second dockerd; skipped {command[0]}")
            return 0
        builder = Settings(state=CACHE / "with-docker")
        shutil.rmtree(builder.state, ignore_errors=True)
        builder.state.mkdir(parents=True)
        t0 = time.monotonic()
        try:
            docker.start(builder)
            rc = subprocess.run(command, env=docker.env(builder)).returncode
            say(f"{Path(command[0]).name} exited {rc} after {time.monotonic() - t0:.1f}s on its own dockerd")
            return rc
        finally:
            procs.stop(builder.state, "dockerd", timeout=40)
            host.unmount_under(builder.state, builder.docker_root)
            shutil.rmtree(builder.state, ignore_errors=True)


def down(s: Settings) -> None:
    with image_store_lock():
        _down(s)


def _down(s: Settings) -> None:
    if not s.state.exists():
        say("nothing to tear down")
        return
    for name in reversed(NODE):
        procs.stop(s.state, name)
    if procs.running(s.state, "dockerd"):
        docker.remove_all_containers(s)  # pod containers; the kubelet is gone so none come back
    proxy = CACHE / "bin" / "kube-proxy"
    if proxy.exists():  # removes every KUBE-* rule and chain it made
        subprocess.run([str(proxy), "--cleanup"], capture_output=True)
    procs.stop(s.state, "dockerd", timeout=40)
    for name in reversed(CONTROL_PLANE):
        procs.stop(s.state, name)
    host.unmount_under(s.state, s.docker_root)
    problems = host.restore(host.HostRecord(s.path("host.json")))
    if problems:
        raise RuntimeError("local-down could not restore: " + "; ".join(problems))
    shutil.rmtree(s.state, ignore_errors=True)
    say("down; host restored")


def main(argv: list[str]) -> int:
    commands = {"up": up, "down": down, "prepare": prepare}
    if not ((len(argv) == 1 and argv[0] in commands) or (len(argv) > 1 and argv[0] == "with-docker")):
        print("usage: python3 -m localup up|down|prepare|with-docker CMD...", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("error: the local cluster needs root (dockerd, kubelet, iptables); run it as root", file=sys.stderr)
        return 2
    try:
        if argv[0] == "with-docker":
            return with_docker(Settings(), argv[1:])
        commands[argv[0]](Settings())
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
