"""Confine and run one untrusted Python program; run as `python3 -I -S sandbox_init.py DIR LIMITS`.

Standard library only, because it runs under an unprivileged uid that may not read llamaops or its
virtual environment (sandbox_host.py copies it next to the program). DIR holds `program.py`, an
empty `root/` and a `report` file. The steps:

1. unshare user, mount, PID, network, IPC and UTS namespaces; the program's uid maps to this uid.
2. fork the PID namespace's init. When init exits, or is killed from outside, the kernel kills
   every process left in the namespace, whether or not it called setsid: that is the hard kill.
3. init builds a new root on a tmpfs: read-only binds of /usr, /etc and the library folders, a
   fresh /proc (only the namespace's processes), a minimal /dev, and small private tmpfs /tmp and
   /work (holding a copy of the program), so nothing it writes reaches the host's disk; pivots
   into it and drops the host's tree.
4. init forks the program with rlimits, an empty environment and no new privileges, waits for
   it, and writes its wait status (or `error <reason>` if confinement failed) to DIR/report.
The network namespace holds only a loopback device, down.
"""
from __future__ import annotations

import ctypes
import json
import os
import platform
import resource
import signal
import sys

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_BIND, MS_REC, MS_PRIVATE = 0x1000, 0x4000, 0x40000
MNT_DETACH, AT_FDCWD, AT_RECURSIVE = 0x2, -100, 0x8000
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID = 0x1, 0x2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 1, 4, 38
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
SYS_MOUNT_SETATTR = 442  # the same on every architecture
INSIDE_ID = 65534  # the program runs as "nobody": not root inside, so exec drops every capability
SETUP_FAILED = 125

HOST_TREES = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
DEVICES = ("null", "zero", "full", "random", "urandom")

libc = ctypes.CDLL(None, use_errno=True)


class MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


class SetupError(Exception):
    pass


def check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise SetupError(f"{what}: {os.strerror(errno)}")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    encode = lambda s: None if s is None else s.encode()  # noqa: E731
    check(libc.mount(encode(source), encode(target), encode(fstype), ctypes.c_ulong(flags), encode(data)),
          f"mount {fstype or source} on {target}")


def set_mount_attr(path: str, attr_set: int, attr_clr: int, flags: int) -> None:
    attr = MountAttr(attr_set, attr_clr, 0, 0)
    check(libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, path.encode(), flags, ctypes.byref(attr), ctypes.sizeof(attr)),
          f"mount_setattr {path} (needs Linux 5.12 or later)")


def enter_namespaces() -> None:
    uid, gid = os.geteuid(), os.getegid()
    check(libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS),
          "unshare user, mount, PID and network namespaces")
    for name, text in (("setgroups", "deny"), ("uid_map", f"{INSIDE_ID} {uid} 1"), ("gid_map", f"{INSIDE_ID} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)


def build_root(base: str, space: int) -> None:
    """Mount the new root at base/root, pivot into it, and leave the host's tree behind."""
    root = os.path.join(base, "root")
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing below propagates back to the host
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    trees = list(HOST_TREES)
    prefix = os.path.realpath(sys.base_prefix)  # where this interpreter lives, if not in /usr
    if not any(prefix == t or prefix.startswith(t + "/") for t in trees):
        trees.append(prefix)
    for tree in trees:
        inside = root + tree
        if os.path.islink(tree) and tree.count("/") == 1:  # merged /usr: /lib -> usr/lib
            os.symlink(os.readlink(tree), inside)
        elif os.path.isdir(tree):
            os.makedirs(inside)
            mount(tree, inside, None, MS_BIND | MS_REC)
    for name in ("proc", "dev", "tmp", "work"):
        os.mkdir(f"{root}/{name}")
    for scratch in ("work", "tmp"):
        mount("tmpfs", f"{root}/{scratch}", "tmpfs", MS_NOSUID | MS_NODEV, f"size={space},mode=0755")
    with open(os.path.join(base, "program.py"), "rb") as src, open(f"{root}/work/program.py", "wb") as dst:
        dst.write(src.read())
    mount_proc(f"{root}/proc")
    mount_dev(f"{root}/dev")
    os.chdir(root)
    check(libc.syscall(SYS_PIVOT_ROOT[platform.machine()], b".", b"."), "pivot_root")
    check(libc.umount2(b".", MNT_DETACH), "detach the host's root")
    os.chdir("/")
    set_mount_attr("/", MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0, AT_RECURSIVE)
    for writable in ("/work", "/tmp"):
        set_mount_attr(writable, 0, MOUNT_ATTR_RDONLY, 0)


def mount_proc(target: str) -> None:
    try:
        mount("proc", target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except SetupError:
        # A container whose /proc has masked paths forbids a fresh proc; an empty /proc is as safe.
        mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=0555")
        return
    with open(f"{target}/sys/user/max_user_namespaces", "w") as f:
        f.write("0")  # nested namespaces: kernel surface the program has no use for


def mount_dev(target: str) -> None:
    mount("tmpfs", target, "tmpfs", MS_NOSUID, "size=64k,mode=0755")
    for name in DEVICES:
        open(f"{target}/{name}", "w").close()
        mount(f"/dev/{name}", f"{target}/{name}", None, MS_BIND)
    for name, link in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                       ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(link, f"{target}/{name}")


def run_program(limits: dict[str, int]) -> None:
    """In the program's process, after the new root exists: never returns."""
    os.chdir("/work")
    for which, value in ((resource.RLIMIT_CPU, limits["cpu_seconds"]), (resource.RLIMIT_AS, limits["memory_bytes"]),
                         (resource.RLIMIT_FSIZE, limits["file_bytes"]), (resource.RLIMIT_NOFILE, limits["open_files"]),
                         (resource.RLIMIT_NPROC, limits["max_processes"]), (resource.RLIMIT_CORE, 0)):
        hard = resource.getrlimit(which)[1]
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)  # a pod may set lower ones
        resource.setrlimit(which, (value, value))
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    env = {"PATH": "/usr/bin:/bin", "HOME": "/work", "PYTHONHASHSEED": "0", "PYTHONIOENCODING": "utf-8"}
    os.execve(sys.executable, [sys.executable, "-I", "-S", "program.py"], env)


def init(base: str, limits: dict[str, int], report: int) -> int:
    """PID 1 of the namespace: build the root, run the program, report how it ended."""
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # the launcher killed: so is the namespace
    # Init holds the report the verdict is read from and runs as the program's uid: closed to it
    # (/proc/1/fd, /proc/1/mem, ptrace), besides the capabilities init has and the program lacks.
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    build_root(base, limits["file_bytes"])
    program = os.fork()
    if program == 0:
        try:
            run_program(limits)
        except BaseException as exc:  # noqa: BLE001 - report it, never run unconfined
            say_error(report, exc)
        os._exit(SETUP_FAILED)
    while True:  # reap orphans the program leaves until the program itself ends
        pid, status = os.wait()
        if pid == program:
            os.write(report, f"status {status}\n".encode())
            return 0


def say_error(report: int, exc: BaseException) -> None:
    os.write(report, ("error " + " ".join(str(exc).split()) + "\n").encode())


def main() -> int:
    base, limits = sys.argv[1], json.loads(sys.argv[2])
    report = os.open(os.path.join(base, "report"), os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    try:
        enter_namespaces()
        child = os.fork()
        if child == 0:
            try:
                os._exit(init(base, limits, report))
            except BaseException as exc:  # noqa: BLE001
                say_error(report, exc)
                os._exit(SETUP_FAILED)
    except (SetupError, OSError) as exc:
        say_error(report, exc)
        return SETUP_FAILED
    _, status = os.waitpid(child, 0)
    return os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else 0


if __name__ == "__main__":
    sys.exit(main())
