"""Run a directory of untrusted Python programs one after another inside a code-sandbox pod
(`python3 -I -m llamaops.platform.eval.sandbox_batch DIR LIMITS`), and print how each ended as
one final JSON line: {"outcomes": [{"status", "exit_code", "seconds", "output"}, ...]} in the
order of the programs' file names.

Here the pod is the boundary (sandbox_pod.py builds it): no service-account token, no network
(a deny-all NetworkPolicy), no secrets or caller's environment, a read-only root, and a PID
namespace that dies with the pod. This module adds, per program: the rlimits of SandboxLimits,
an empty environment, a fresh work directory under /tmp, and a wall-clock limit after which its
process group is killed, then every process it left (this process is their subreaper, so even a
`setsid` child is found), and its pipe closed.

What it does not isolate: the programs of one batch share the pod, its uid, its /tmp and its
memory limit. A hostile program can disturb its neighbours' results (fill /tmp, exhaust the
pod's memory so the pod fails), never the caller or the cluster.

Standard library and sandbox_host.py only: this process stays small next to the programs.
"""
from __future__ import annotations

import ctypes
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from llamaops.platform.eval.sandbox_host import OUTPUT_CHARS, kill_group, output_tail, status_of, wait_or_kill

DRAIN_SECONDS = 2.0  # after the kill, for the pipe to close
LOG_CHARS = 4 << 20  # the outputs' share of the result line, well under the kubelet's log rotation (10 MiB)
PR_SET_CHILD_SUBREAPER, PR_SET_DUMPABLE = 36, 4
PROGRAM_ENV = {"PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0", "PYTHONIOENCODING": "utf-8"}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python3 -m llamaops.platform.eval.sandbox_batch DIR LIMITS_JSON", file=sys.stderr)
        return 2
    folder, limits = Path(argv[0]), json.loads(argv[1])
    libc = ctypes.CDLL(None, use_errno=True)
    # Orphans of a program (a double fork, setsid) become this process's children, so they can be killed.
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    # The programs run as this uid: without this they could write a forged result line into this
    # process's stdout (the pod's log) through /proc/<pid>/fd/1.
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".py") and not p.name.startswith("."))
    chars = max(200, min(OUTPUT_CHARS, LOG_CHARS // max(len(names), 1)))
    outcomes = [run_one((folder / name).read_bytes(), limits, chars) for name in names]
    print(json.dumps({"outcomes": outcomes}), flush=True)
    return 0


def run_one(source: bytes, limits: dict, chars: int = OUTPUT_CHARS) -> dict:
    work = Path(tempfile.mkdtemp(prefix="program-", dir=os.environ.get("TMPDIR", "/tmp")))
    try:
        (work / "program.py").write_bytes(source)
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-I", "-S", "program.py"], cwd=work, env={**PROGRAM_ENV, "HOME": str(work)},
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=lambda: _set_rlimits(limits, _processes_of_this_uid()),
        )
        output, timed_out = wait_or_kill(process, float(limits["wall_seconds"]), _kill_all, DRAIN_SECONDS)
        seconds = time.perf_counter() - started
        code = process.returncode
    finally:
        _kill_orphans()
        shutil.rmtree(work, ignore_errors=True)
    return {"status": status_of(code, timed_out), "exit_code": None if timed_out else code, "seconds": round(seconds, 3),
            "output": output_tail(output)[-chars:]}


def _set_rlimits(limits: dict, running: int) -> None:
    """In the child before exec. The process limit counts every process of the uid, so it is
    granted on top of those already running (root ignores it, as it does in sandbox_init.py)."""
    for which, value in ((resource.RLIMIT_CPU, limits["cpu_seconds"]), (resource.RLIMIT_AS, limits["memory_bytes"]),
                         (resource.RLIMIT_FSIZE, limits["file_bytes"]), (resource.RLIMIT_NOFILE, limits["open_files"]),
                         (resource.RLIMIT_NPROC, limits["max_processes"] + running), (resource.RLIMIT_CORE, 0)):
        hard = resource.getrlimit(which)[1]
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (value, value))


def _processes_of_this_uid() -> int:
    uid, count = str(os.getuid()), 0
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/status") as f:
                count += any(line.startswith("Uid:") and line.split()[1] == uid for line in f)
        except (OSError, ValueError):
            continue
    return count


def _kill_all(pgid: int) -> None:
    kill_group(pgid)
    _kill_orphans()  # a setsid child outside the group may still hold the pipe


def _kill_orphans() -> None:
    """Kill and reap every descendant left; killed parents hand their children to this process."""
    for _ in range(100):  # bounded: a fork bomb is held by the process limit
        children = _children()
        if not children:
            return
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in children:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


def _children() -> list[int]:
    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, ...
        except (OSError, IndexError):
            continue
        if entry.isdigit() and int(fields[1]) == me:
            found.append(int(entry))
    return found


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
