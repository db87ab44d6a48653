"""Run untrusted Python (generated code and its tests) in a constrained subprocess.

Limits, all set in the child before it runs anything: CPU seconds, address space, file size,
open files and processes (rlimits), a wall-clock timeout enforced by the parent, a fresh
temporary working directory, an empty environment, and no network: a new network namespace
(only loopback, down) when the kernel allows it, and in every case an audit hook that refuses
socket creation. Under root the child also runs as a fresh unprivileged uid, so the process
limit applies to it alone and every process it leaves behind is found and killed by that uid.
"""
import ctypes
import functools
import os
import random
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import PositiveFloat, PositiveInt

from llamaops.platform.config.base import Config

_CLONE_NEWNET = 0x40000000
_OUTPUT_CHARS = 2000
_SANDBOX_UIDS = (200_000, 300_000)  # above any real account's uid

# Runs first in the child: refuse sockets, and writes outside its directory, before the program runs.
_BOOTSTRAP = """\
import os, sys
_HERE = os.getcwd() + os.sep
def _guard(event, args):
    if event in ("socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo"):
        raise PermissionError("network access is disabled in the sandbox")
    if event == "open" and isinstance(args[0], str) and (args[2] & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
                                                         or any(m in (args[1] or "") for m in "wax+")):
        if not os.path.abspath(args[0]).startswith(_HERE):
            raise PermissionError(f"writing outside the sandbox directory is disabled: {args[0]}")
sys.addaudithook(_guard)
del _guard
with open("program.py", encoding="utf-8") as _f:
    _code = compile(_f.read(), "program.py", "exec")
exec(_code, {"__name__": "__main__"})
"""


class SandboxLimits(Config):
    cpu_seconds: PositiveInt = 5
    wall_seconds: PositiveFloat = 10.0
    memory_bytes: PositiveInt = 1 << 30  # address space
    max_processes: PositiveInt = 16
    file_bytes: PositiveInt = 16 << 20
    open_files: PositiveInt = 64


Status = Literal["passed", "failed", "timeout", "killed"]


@dataclass(frozen=True)
class SandboxOutcome:
    status: Status  # passed: exit 0; failed: non-zero exit; timeout: wall limit; killed: by a signal (CPU, memory)
    exit_code: int | None
    seconds: float
    output: str  # the tail of stdout + stderr
    isolated_network: bool  # a network namespace was used (else the audit hook alone)

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def run_sandboxed(source: str, limits: SandboxLimits = SandboxLimits()) -> SandboxOutcome:
    """Execute `source` as a Python program under `limits`; never raises for anything the program does."""
    as_root = os.geteuid() == 0
    uid = random.randrange(*_SANDBOX_UIDS) if as_root else None
    isolated = _can_unshare_network()
    with tempfile.TemporaryDirectory(prefix="llamaops-sandbox-") as tmp:
        work = Path(tmp)
        (work / "program.py").write_text(source, encoding="utf-8")
        (work / "bootstrap.py").write_text(_BOOTSTRAP, encoding="utf-8")
        if uid is not None:
            for path in (work, work / "program.py", work / "bootstrap.py"):
                os.chown(path, uid, uid)
        started = time.perf_counter()
        child = subprocess.Popen(
            [_interpreter(as_root), "-I", "-S", "bootstrap.py"],
            cwd=work,
            env={"PATH": "/usr/bin:/bin", "HOME": str(work), "PYTHONHASHSEED": "0", "PYTHONIOENCODING": "utf-8"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, killed as a whole
            preexec_fn=lambda: _confine(limits, uid, isolated),
        )
        try:
            output, _ = child.communicate(timeout=limits.wall_seconds)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(child.pid)
            output, _ = child.communicate()
        finally:
            _kill_group(child.pid)
            if uid is not None:
                _kill_uid(uid)
        seconds = time.perf_counter() - started
    text = output.decode("utf-8", errors="replace")[-_OUTPUT_CHARS:]
    code = child.returncode
    status: Status = "timeout" if timed_out else "passed" if code == 0 else "killed" if code < 0 else "failed"
    return SandboxOutcome(status, code, round(seconds, 3), text, isolated)


def _confine(limits: SandboxLimits, uid: int | None, isolate_network: bool) -> None:
    """In the child, between fork and exec: network namespace, rlimits, then drop root."""
    if isolate_network:
        ctypes.CDLL(None, use_errno=True).unshare(_CLONE_NEWNET)
    for which, value in (
        (resource.RLIMIT_CPU, limits.cpu_seconds),
        (resource.RLIMIT_AS, limits.memory_bytes),
        (resource.RLIMIT_FSIZE, limits.file_bytes),
        (resource.RLIMIT_NOFILE, limits.open_files),
        (resource.RLIMIT_CORE, 0),
    ):
        resource.setrlimit(which, (value, value))
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.max_processes, limits.max_processes))
    else:
        # Not root: the limit counts all of this user's processes, so allow the ones already running.
        current = len(processes_of(os.getuid()))
        resource.setrlimit(resource.RLIMIT_NPROC, (current + limits.max_processes,) * 2)


@functools.cache
def _interpreter(as_root: bool) -> str:
    """This Python, or under root one the unprivileged sandbox uid may execute (programs get the
    standard library only, so any Python 3 will do)."""
    candidates = [sys.executable]
    if as_root:
        candidates = [os.path.realpath(sys.executable), *filter(None, (shutil.which(name, path="/usr/local/bin:/usr/bin:/bin")
                                                                      for name in ("python3", "python")))]
        candidates = [c for c in candidates if _world_executable(Path(c))]
    if not candidates:
        raise SandboxUnavailableError(
            f"no Python executable by an unprivileged user: {sys.executable} lies in a private directory; install python3 in /usr/bin"
        )
    return candidates[0]


def _world_executable(path: Path) -> bool:
    path = path.resolve()
    folders_open = all(p.stat().st_mode & stat.S_IXOTH for p in path.parents)
    return path.is_file() and folders_open and bool(path.stat().st_mode & stat.S_IXOTH)


class SandboxUnavailableError(RuntimeError):
    """The machine offers no way to run the sandbox safely."""


@functools.cache
def _can_unshare_network() -> bool:
    """Whether a child may enter a new network namespace (root, or unprivileged user namespaces)."""
    pid = os.fork()
    if pid == 0:
        os._exit(0 if ctypes.CDLL(None, use_errno=True).unshare(_CLONE_NEWNET) == 0 else 1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def processes_of(uid: int) -> list[int]:
    """Live (not zombie) processes of `uid`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid and (entry / "stat").read_text().rpartition(")")[2].split()[0] != "Z":
                    pids.append(int(entry.name))
            except (FileNotFoundError, ProcessLookupError, IndexError):
                pass
    return pids


def _kill_uid(uid: int) -> None:
    """Kill every process of the sandbox's own uid (e.g. forks that left the process group)."""
    for _ in range(20):
        pids = processes_of(uid)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
