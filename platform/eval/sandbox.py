"""Run untrusted Python (generated code and its tests) inside a boundary the kernel enforces.

Each program runs in fresh user, mount, PID, network, IPC and UTS namespaces (sandbox_init.py):
a read-only root made of /usr, /etc and the library folders, its own read-write work directory
and /tmp, a /proc that shows only its own processes, loopback-only networking, no inherited
environment, rlimits (CPU, address space, file size, open files, processes) and a wall-clock
limit after which the whole PID namespace is killed (sandbox_host.py). The same path serves a
root and a non-root evaluator. Where the kernel refuses the namespaces, nothing runs:
`run_sandboxed` raises SandboxUnavailableError with one line saying why.
"""
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

from pydantic import PositiveFloat, PositiveInt

from llamaops.platform.config.base import Config

from .sandbox_host import SandboxUnavailableError, launch

__all__ = ["BatchRunner", "SandboxLimits", "SandboxOutcome", "SandboxUnavailableError", "require_sandbox", "run_batch",
           "run_sandboxed"]

_WHAT_TO_DO = ("run code evaluation where unprivileged user namespaces are allowed (Linux 5.12+, "
               "no seccomp profile blocking unshare and mount), or skip HumanEval")


class SandboxLimits(Config):
    cpu_seconds: PositiveInt = 5
    wall_seconds: PositiveFloat = 10.0
    memory_bytes: PositiveInt = 1 << 30  # address space
    max_processes: PositiveInt = 16
    file_bytes: PositiveInt = 16 << 20
    open_files: PositiveInt = 64


DEFAULT_LIMITS = SandboxLimits()


Status = Literal["passed", "failed", "timeout", "killed"]


@dataclass(frozen=True)
class SandboxOutcome:
    status: Status  # passed: exit 0; failed: non-zero exit; timeout: wall limit; killed: by a signal (CPU, memory)
    exit_code: int | None
    seconds: float
    output: str  # the tail of stdout + stderr

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def run_sandboxed(source: str, limits: SandboxLimits = DEFAULT_LIMITS) -> SandboxOutcome:
    """Execute `source` as a Python program under `limits`; never raises for anything the program
    does, and raises SandboxUnavailableError, running nothing, where it cannot be confined."""
    require_sandbox()
    try:
        run = launch(source, _rlimits(limits), limits.wall_seconds)
    except SandboxUnavailableError as exc:
        raise SandboxUnavailableError(_refusal(str(exc))) from None
    return SandboxOutcome(run.status, run.exit_code, run.seconds, run.output)  # type: ignore[arg-type]


# programs, limits -> their outcomes in order: run_batch here, or a code-sandbox pod (sandbox_pod.py)
BatchRunner = Callable[[list[str], "SandboxLimits"], list[SandboxOutcome]]


def run_batch(sources: list[str], limits: SandboxLimits = DEFAULT_LIMITS, workers: int = 2) -> list[SandboxOutcome]:
    """run_sandboxed on each program, `workers` at a time; the outcomes in order."""
    require_sandbox()
    with ThreadPoolExecutor(max_workers=workers) as pool:  # each job waits on its own subprocess
        return list(pool.map(lambda source: run_sandboxed(source, limits), sources))


def require_sandbox() -> None:
    """Raise SandboxUnavailableError (one line) unless this machine can confine generated code."""
    if reason := _probe():
        raise SandboxUnavailableError(_refusal(reason))


@functools.cache
def _probe() -> str | None:
    """Why the sandbox cannot start here (None if it can): one harmless run, once per process."""
    try:
        run = launch("", _rlimits(SandboxLimits()), wall_seconds=30)
    except SandboxUnavailableError as exc:
        return str(exc)
    return None if run.status == "passed" else f"a trivial program ended {run.status}: {' '.join(run.output.split())[-200:]}"


def _refusal(reason: str) -> str:
    return f"refusing to run generated code unconfined: {reason}; {_WHAT_TO_DO}"


def _rlimits(limits: SandboxLimits) -> dict[str, int]:
    return limits.model_dump(exclude={"wall_seconds"})
