"""The evaluator's side of the sandbox: start sandbox_init.py on one program, hold it to the wall
clock, kill it, and read how it ended.

Standard library only, so an unprivileged process can run it from a copy (tests do). Under root
the launcher starts as a fresh unprivileged uid, so root and non-root evaluators take the same
path and the process limit counts the sandbox alone.
"""
from __future__ import annotations

import functools
import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

INIT = Path(__file__).with_name("sandbox_init.py")
SANDBOX_UIDS = (200_000, 300_000)  # above any real account's uid
OUTPUT_CHARS = 2000
DRAIN_SECONDS = 5.0  # after the kill, for the pipe to close (the kernel tears the namespace down)


class SandboxUnavailableError(RuntimeError):
    """The machine cannot confine generated code; nothing of it ran."""


@dataclass(frozen=True)
class Run:
    status: str  # passed: exit 0; failed: non-zero exit; timeout: wall limit; killed: by a signal (CPU, memory)
    exit_code: int | None  # negative: the signal that ended it
    seconds: float
    output: str  # the tail of stdout + stderr


def launch(source: str, limits: dict[str, int], wall_seconds: float) -> Run:
    """Run `source` confined by sandbox_init.py under `limits` (rlimits) and `wall_seconds`."""
    uid = random.randrange(*SANDBOX_UIDS) if os.geteuid() == 0 else None
    with tempfile.TemporaryDirectory(prefix="llamaops-sandbox-", ignore_cleanup_errors=True) as tmp:
        base = Path(tmp)
        (base / "root").mkdir()
        (base / "program.py").write_text(source, encoding="utf-8")
        (base / "report").touch()
        shutil.copyfile(INIT, base / "sandbox_init.py")
        if uid is not None:
            for path in (base, base / "root", base / "report", base / "program.py"):
                os.chown(path, uid, uid)
        drop = {"user": uid, "group": uid, "extra_groups": []} if uid is not None else {}
        started = time.perf_counter()
        launcher = subprocess.Popen(
            [interpreter(), "-I", "-S", str(base / "sandbox_init.py"), str(base), json.dumps(limits)],
            cwd=base, env={}, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True, **drop,  # its own process group: the wall limit kills it whole
        )
        output, timed_out = wait_or_kill(launcher, wall_seconds)
        seconds = time.perf_counter() - started
        report = (base / "report").read_text(encoding="utf-8").splitlines()
    if errors := [line[len("error "):] for line in report if line.startswith("error ")]:
        raise SandboxUnavailableError(errors[0])
    statuses = [int(line.split()[1]) for line in report if line.startswith("status ")]
    code = os.waitstatus_to_exitcode(statuses[0]) if statuses else None
    return Run(status_of(code, timed_out), code, round(seconds, 3), output_tail(output))


def status_of(code: int | None, timed_out: bool) -> str:
    return "timeout" if timed_out else "killed" if code is None or code < 0 else "passed" if code == 0 else "failed"


def output_tail(output: bytes) -> str:
    return output.decode("utf-8", errors="replace")[-OUTPUT_CHARS:]


def wait_or_kill(process: subprocess.Popen, wall_seconds: float, kill: Callable[[int], None] | None = None,
                 drain_seconds: float = DRAIN_SECONDS) -> tuple[bytes, bool]:
    """The output and whether the wall limit ran out. Killing the launcher's group kills the
    namespace's init, which kills every process in it, so the pipe closes; should anything still
    hold it, it is closed here after `drain_seconds`. `kill(pid)`: how to kill (default: its group)."""
    try:
        output, _ = process.communicate(timeout=wall_seconds)
        return output, False
    except subprocess.TimeoutExpired:
        (kill or kill_group)(process.pid)
    try:
        output, _ = process.communicate(timeout=drain_seconds)
    except subprocess.TimeoutExpired:
        process.stdout.close()
        process.wait()
        output = b""
    return output, True


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@functools.lru_cache(maxsize=None)
def interpreter() -> str:
    """This Python, or under root one the unprivileged sandbox uid may execute (the launcher and
    programs use the standard library only, so any Python 3.8+ will do)."""
    candidates = [os.path.realpath(sys.executable)]
    if os.geteuid() == 0:
        found = (shutil.which(name, path="/usr/local/bin:/usr/bin:/bin") for name in ("python3", "python"))
        candidates = [c for c in (*candidates, *filter(None, found)) if _world_executable(Path(c))]
    if not candidates:
        raise SandboxUnavailableError(
            f"no Python an unprivileged user may execute: {sys.executable} lies in a private directory; install python3 in /usr/bin")
    return candidates[0]


def _world_executable(path: Path) -> bool:
    path = path.resolve()
    folders_open = all(p.stat().st_mode & stat.S_IXOTH for p in path.parents)
    return path.is_file() and folders_open and bool(path.stat().st_mode & stat.S_IXOTH)
