"""The Debian packages a node needs besides the binaries build_k8s.sh builds.

One function installs them, for local-up and for anything that must read the host as a node
will change it (the pod tier's "before" snapshot). A lock keeps two callers (the background
preparation scripts/test.sh starts, and local-up) from running apt-get at once.
"""
import fcntl
import os
import shutil
import subprocess
from pathlib import Path

# The tool each package provides: a tool missing from PATH means its package is missing.
PACKAGES = {"dockerd": "docker.io", "runc": "runc", "conntrack": "conntrack", "iptables": "iptables",
            "socat": "socat", "openssl": "openssl", "gcc": "gcc"}
CNI_PLUGINS = Path("/usr/lib/cni")
LOCK = Path("/var/lock/llamaops-localup-packages.lock")


def missing_packages() -> list[str]:
    missing = sorted({pkg for tool, pkg in PACKAGES.items() if shutil.which(tool) is None})
    if not (CNI_PLUGINS / "bridge").exists():
        missing.append("containernetworking-plugins")
    return missing


def install_packages(say=lambda msg: None) -> None:
    """Install what is missing with apt-get (idempotent; a no-op once everything is there)."""
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        missing = missing_packages()
        if not missing:
            return
        if shutil.which("apt-get") is None:
            raise RuntimeError(f"missing {', '.join(missing)} and no apt-get to install them")
        say(f"installing {' '.join(missing)}")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for argv in (["apt-get", "update", "-qq"],
                     ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]):
            out = subprocess.run(argv, capture_output=True, text=True, env=env)
            if out.returncode != 0:
                raise RuntimeError(f"{' '.join(argv[:2])} failed: {out.stderr.strip()[-500:]}")
        still = missing_packages()
        if still:
            raise RuntimeError(f"apt-get installed {' '.join(missing)} but {', '.join(still)} is still missing")
