"""Write a minimal root filesystem holding this host's Python 3 (interpreter, stdlib, the shared
libraries they load, /bin/sh, bash, a few coreutils and CA certificates) into DIR, for `docker
import` as a base image. What python:3.11-slim has and pods run: bash (KubeRay runs Ray's
containers with it), mktemp (KFP's lightweight components start with it), cat and friends.

Used where no registry is reachable (tests/pods): the Dockerfile then builds FROM it exactly as
it builds FROM python:3.11-slim elsewhere. Usage: python3 host_python_rootfs.py DIR
"""
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

# Every shared library of these Debian packages: wheels load libraries Python itself does not
# link (torch needs libstdc++; cryptography's Rust module needs libpthread.so.0, and so on).
RUNTIME_PACKAGES = ("libc6", "libgcc-s1", "libstdc++6", "zlib1g")
COREUTILS = ("cat", "env", "ls", "mkdir", "mktemp", "rm", "sleep")  # sleep: the servers' preStop


def package_libs(package: str) -> set[Path]:
    out = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True).stdout
    paths = (Path(line) for line in out.splitlines())
    return {p for p in paths if ".so" in p.name and (p.is_file() or p.is_symlink())}


def shared_libs(binary: Path) -> set[Path]:
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True).stdout
    return {Path(m) for m in re.findall(r"(/\S+\.so[^\s]*)", out)}


def copy(src: Path, root: Path) -> None:
    """Copy src (and, for a symlink, what it points at) to the same path under root."""
    dst = root / src.relative_to("/")
    if dst.exists() or dst.is_symlink():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_symlink():
        target = os.readlink(src)
        os.symlink(target, dst)
        copy((src.parent / target).resolve(), root)
    elif src.is_dir():
        shutil.copytree(src, dst, symlinks=True, ignore=shutil.ignore_patterns("test", "tests", "__pycache__", "idlelib", "tkinter"))
    else:
        shutil.copy2(src, dst)


def main(root: Path) -> None:
    # Debian's merged /usr: /bin, /lib and /lib64 are links into /usr.
    for link, target in (("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")):
        (root / "usr" / target.split("/")[1]).mkdir(parents=True, exist_ok=True)
        if not (root / link).exists():
            os.symlink(target, root / link)
    python = Path(sys.executable).resolve()
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    programs = [Path("/usr/bin/dash"), Path("/usr/bin/bash"), *(Path("/usr/bin", tool) for tool in COREUTILS)]
    binaries = [python, *programs, *Path(sysconfig.get_paths()["platstdlib"], "lib-dynload").glob("*.so")]
    libs = set().union(*(shared_libs(b) for b in binaries), *(package_libs(p) for p in RUNTIME_PACKAGES))
    for path in [python, stdlib, *programs, Path("/etc/ssl/certs/ca-certificates.crt"), *sorted(libs)]:
        copy(Path(path), root)
    (root / "usr/bin/python3").symlink_to(python.name)
    (root / "usr/bin/sh").symlink_to("dash")
    etc = root / "etc"
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnonroot:x:65532:65532:nonroot:/tmp:/bin/sh\n")
    (etc / "group").write_text("root:x:0:\nnonroot:x:65532:\n")
    for d in ("tmp", "root", "proc", "sys", "dev"):
        (root / d).mkdir(exist_ok=True)
    (root / "tmp").chmod(0o1777)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: host_python_rootfs.py DIR")
    main(Path(sys.argv[1]))
