"""Host changes the node needs, each recorded before it is made so local-down can undo it.

The record (host.json in the state dir) is written before the first change and never
overwritten by a second `local-up`, so originals survive a crash or a repeated start.
"""
import json
import os
import shutil
import subprocess
from pathlib import Path

from .packages import install_packages

CGROUP_ROOT = Path("/sys/fs/cgroup")
# Parents the kubelet (cgroupsPerQOS) and dockerd (cgroupfs driver) create in every hierarchy.
CGROUP_PARENTS = ("kubepods", "docker")
# The kubelet writes these whatever its --root-dir (1.20 hard-codes them).
KUBELET_FIXED_PATHS = ("/var/lib/kubelet", "/var/log/pods", "/var/log/containers")
# Sysctls the kubelet and kube-proxy set on their own, plus the two the pod network needs.
TOUCHED_SYSCTLS = ("vm.overcommit_memory", "kernel.panic", "kernel.panic_on_oops",
                   "net.ipv4.conf.all.route_localnet", "net.ipv4.ip_forward",
                   "net.bridge.bridge-nf-call-iptables")
ISOLATE_CHAIN = "LLAMAOPS-ISOLATE"


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run(list(argv), capture_output=True, text=True)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {out.stderr.strip()[-400:]}")
    return out


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def iptables_chains() -> dict[str, list[str]]:
    """User-defined chains per table; none on a host without iptables (nothing to restore)."""
    chains = {}
    for table in ("filter", "nat", "mangle"):
        if shutil.which("iptables") is None:
            chains[table] = []
            continue
        out = run("iptables", "-t", table, "-S", check=False).stdout
        chains[table] = sorted(line.split()[1] for line in out.splitlines() if line.startswith("-N "))
    return chains


def host_view() -> dict:
    """What local-down must restore, as a test compares it: links, iptables chains, sysctls."""
    links = run("ip", "-o", "link", "show").stdout
    return {"links": sorted(line.split(":")[1].strip().split("@")[0] for line in links.splitlines()),
            "chains": iptables_chains(),
            "sysctls": {n: _sysctl_path(n).read_text().strip() for n in TOUCHED_SYSCTLS if _sysctl_path(n).exists()}}


def view_before_node() -> dict:
    """The host before local-up, read once the node's packages are in: a tool they bring
    (iptables) must exist to read the state it will change, and their own install changes
    nothing local-down undoes."""
    install_packages()
    return host_view()


def view_differences(before: dict, after: dict) -> list[str]:
    """What differs between two host views. A sysctl that appeared (its module was loaded by
    the node, and modules stay) is not a difference: only values that existed before count."""
    problems = [f"{key}: before {before[key]}, after {after[key]}" for key in ("links", "chains")
                if before[key] != after[key]]
    problems += [f"sysctl {n}: before {v}, after {after['sysctls'].get(n)}"
                 for n, v in before["sysctls"].items() if after["sysctls"].get(n) != v]
    return problems


def _cgroup_dirs() -> list[str]:
    return sorted(str(c / p) for c in CGROUP_ROOT.iterdir() if c.is_dir() for p in CGROUP_PARENTS)


class HostRecord:
    def __init__(self, path: Path):
        self.path = path
        self.data: dict = json.loads(path.read_text()) if path.exists() else {}

    def take_snapshot(self) -> None:
        """What the host looks like before the first change (kept across repeated ups)."""
        if self.data:
            return
        self.data = {
            "sysctls": {n: _sysctl_path(n).read_text().strip() for n in TOUCHED_SYSCTLS if _sysctl_path(n).exists()},
            "absent_paths": [p for p in KUBELET_FIXED_PATHS if not os.path.exists(p)],
            "absent_cgroups": [d for d in _cgroup_dirs() if not os.path.exists(d)],
            "iptables_chains": iptables_chains(),
            "links": [],
        }
        self._save()

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        tmp.replace(self.path)

    def add_link(self, name: str) -> None:
        if name not in self.data["links"]:
            self.data["links"].append(name)
            self._save()


def set_sysctl(name: str, value: str) -> None:
    _sysctl_path(name).write_text(value)


def ensure_node_link(record: HostRecord, name: str, ip: str) -> None:
    """A port-less bridge holding the node IP: a dummy interface where the dummy module is missing."""
    owner = run("ip", "-o", "addr", "show", "to", f"{ip}/32").stdout.split()
    if owner and owner[1] != name:
        raise RuntimeError(f"node IP {ip} is already on {owner[1]}; set LLAMAOPS_NODE_IP to a free 192.0.2.x address")
    if run("ip", "link", "show", name, check=False).returncode != 0:
        record.add_link(name)
        run("ip", "link", "add", name, "type", "bridge")
    if not owner:
        run("ip", "addr", "add", f"{ip}/32", "dev", name)
    run("ip", "link", "set", name, "up")


def ensure_pod_bridge(record: HostRecord, name: str, gateway_cidr: str, service_cidr: str) -> None:
    """The CNI bridge with its gateway address, made up front (the bridge plugin adopts both), so
    the pod and service ranges are routed onto it before the first pod: a packet for a pod or a
    ClusterIP kube-proxy does not rewrite stays on the bridge instead of following the default
    route off the machine."""
    if run("ip", "link", "show", name, check=False).returncode != 0:
        record.add_link(name)
        run("ip", "link", "add", name, "type", "bridge")
    run("ip", "addr", "replace", gateway_cidr, "dev", name)
    run("ip", "link", "set", name, "up")
    run("ip", "route", "replace", service_cidr, "dev", name)


def isolate_pod_network(bridge: str) -> None:
    """Pod traffic may cross the pod bridge (and reach the host), never be forwarded off it."""
    if run("iptables", "-n", "-L", ISOLATE_CHAIN, check=False).returncode != 0:
        run("iptables", "-N", ISOLATE_CHAIN)
    run("iptables", "-F", ISOLATE_CHAIN)
    run("iptables", "-A", ISOLATE_CHAIN, "-i", bridge, "!", "-o", bridge, "-j", "DROP")
    run("iptables", "-A", ISOLATE_CHAIN, "!", "-i", bridge, "-o", bridge, "-j", "DROP")
    if run("iptables", "-C", "FORWARD", "-j", ISOLATE_CHAIN, check=False).returncode != 0:
        run("iptables", "-I", "FORWARD", "1", "-j", ISOLATE_CHAIN)


def unmount_under(*roots: Path) -> None:
    """Every mount below the roots (tmpfs secrets, overlay layers, netns files), deepest first."""
    prefixes = tuple(str(r.resolve()) + "/" for r in roots)
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for mp in sorted((p for p in points if p.startswith(prefixes)), key=len, reverse=True):
        run("umount", "-l", mp, check=False)


def _remove_chain(table: str, chain: str) -> None:
    rules = run("iptables", "-t", table, "-S", check=False).stdout.splitlines()
    for rule in rules:  # drop every jump into the chain first
        parts = rule.split()
        if parts[:1] == ["-A"] and f"-j {chain}" in rule and parts[1] != chain:
            run("iptables", "-t", table, "-D", *parts[1:], check=False)
    run("iptables", "-t", table, "-F", chain, check=False)
    run("iptables", "-t", table, "-X", chain, check=False)


def _rmdir_tree(d: Path) -> None:
    if not d.is_dir():
        return
    for child in sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        try:
            child.rmdir()
        except OSError:
            pass
    try:
        d.rmdir()
    except OSError:
        pass


def restore(record: HostRecord) -> list[str]:
    """Undo everything recorded; returns what could not be undone (empty when clean)."""
    if not record.data:
        return []
    problems = []
    before = record.data["iptables_chains"]
    for table, chains in iptables_chains().items():
        for chain in chains:
            if chain not in before.get(table, []):
                _remove_chain(table, chain)
    for name in record.data["links"]:
        run("ip", "link", "del", name, check=False)
    for d in record.data["absent_cgroups"]:
        _rmdir_tree(Path(d))
        if os.path.exists(d):
            problems.append(f"cgroup {d} still has processes")
    for p in record.data["absent_paths"]:
        run("rm", "-rf", "--one-file-system", p, check=False)
    for name, value in record.data["sysctls"].items():
        try:
            set_sysctl(name, value)
        except OSError as e:
            problems.append(f"sysctl {name}: {e}")
    left = {t: [c for c in cs if c not in before.get(t, [])] for t, cs in iptables_chains().items()}
    problems += [f"iptables chain {t}/{c} remains" for t, cs in left.items() for c in cs]
    if not problems:
        record.path.unlink(missing_ok=True)
    return problems
