"""The pod tier's set-up on a host that has none of the node's packages yet.

The real binaries are hidden by a PATH that holds only what a fresh machine has; a stand-in
`apt-get` "installs" a package by putting its tool on that PATH (the stand-in `iptables` lists
one chain). So these run anywhere, without root, and fail if the tier ever reads the host
before the packages are in again.
"""
import json
import shutil
import sys
from pathlib import Path

import pytest
from localup import host, packages

# What a fresh machine of this kind has: no iptables, dockerd, conntrack, socat or runc.
FRESH_MACHINE_TOOLS = ("ip", "openssl", "gcc", "sh", "env")
FAKE_CHAIN = "FRESHLY-INSTALLED"

FAKE_APT_GET = f"""#!{sys.executable}
import json, os, sys
from pathlib import Path
args = sys.argv[1:]
with open(os.environ["FAKE_APT_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
if args[:1] == ["install"]:
    tools = json.loads(os.environ["FAKE_APT_TOOLS"])
    bin_dir = Path(os.environ["FAKE_APT_BIN"])
    for package in (a for a in args[1:] if not a.startswith("-")):
        if package == "containernetworking-plugins":
            Path(os.environ["FAKE_APT_CNI"], "bridge").touch()
        for tool in tools.get(package, []):
            script = bin_dir / tool
            body = "echo -N {FAKE_CHAIN}" if tool == "iptables" else "true"
            script.write_text("#!/bin/sh\\n" + body + "\\n")
            script.chmod(0o755)
"""


@pytest.fixture
def fresh_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH = one directory with only a fresh machine's tools; the node's packages not installed."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in FRESH_MACHINE_TOOLS:
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr(packages, "CNI_PLUGINS", tmp_path / "cni")
    monkeypatch.setattr(packages, "LOCK", tmp_path / "packages.lock")
    return bin_dir


@pytest.fixture
def fake_apt_get(fresh_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "cni").mkdir()
    apt = fresh_path / "apt-get"
    apt.write_text(FAKE_APT_GET)
    apt.chmod(0o755)
    tools: dict[str, list[str]] = {}
    for tool, package in packages.PACKAGES.items():
        tools.setdefault(package, []).append(tool)
    log = tmp_path / "apt.log"
    for name, value in {"FAKE_APT_LOG": log, "FAKE_APT_TOOLS": json.dumps(tools), "FAKE_APT_BIN": fresh_path,
                        "FAKE_APT_CNI": tmp_path / "cni"}.items():
        monkeypatch.setenv(name, str(value))
    return log


def test_the_host_is_read_after_the_node_packages_are_installed(fake_apt_get: Path):
    assert shutil.which("iptables") is None
    view = host.view_before_node()
    calls = [json.loads(line) for line in fake_apt_get.read_text().splitlines()]
    assert calls[0][0] == "update"
    installed = set(calls[1][calls[1].index("--no-install-recommends") + 1:])
    assert {"iptables", "docker.io", "conntrack", "containernetworking-plugins"} <= installed
    # The chain only the freshly installed iptables reports: the reading came after the install.
    assert view["chains"]["filter"] == [FAKE_CHAIN]
    assert packages.missing_packages() == []


def test_installing_again_runs_no_apt_get(fake_apt_get: Path):
    packages.install_packages()
    packages.install_packages()
    assert len(fake_apt_get.read_text().splitlines()) == 2  # update + install, once


def test_without_iptables_there_are_no_chains_to_record_or_restore(fresh_path: Path, tmp_path: Path):
    assert host.iptables_chains() == {"filter": [], "nat": [], "mangle": []}
    record = host.HostRecord(tmp_path / "host.json")
    record.data = {"sysctls": {}, "absent_paths": [], "absent_cgroups": [], "links": [],
                   "iptables_chains": host.iptables_chains()}
    assert host.restore(record) == []


def test_a_missing_package_with_no_apt_get_is_one_clear_error(fresh_path: Path):
    with pytest.raises(RuntimeError, match="missing .*iptables.* and no apt-get to install them"):
        packages.install_packages()


def test_a_sysctl_that_appears_with_a_module_is_not_a_change():
    before = {"links": ["lo"], "chains": {"filter": []}, "sysctls": {"net.ipv4.ip_forward": "0"}}
    after = {"links": ["lo"], "chains": {"filter": []},
             "sysctls": {"net.ipv4.ip_forward": "0", "net.bridge.bridge-nf-call-iptables": "1"}}
    assert host.view_differences(before, after) == []
    after["sysctls"]["net.ipv4.ip_forward"] = "1"
    after["chains"] = {"filter": ["LLAMAOPS-ISOLATE"]}
    assert len(host.view_differences(before, after)) == 2
