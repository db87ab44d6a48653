"""Where a data-prep run spends its time: CPU seconds of each Ray task and of each driver phase.

Process CPU time, not wall time: on a loaded machine a task waiting for a core accrues wall time
but no CPU time, so the split into parallel work (tasks, per worker) and serial work (the driver,
all its threads: Ray Data's executor thread included) holds whatever else runs on the host, and
gives the Amdahl bound of adding workers. Workers always send their timings back (a few bytes per
task); they are kept only inside `collecting()`.
"""
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

Result = TypeVar("Result")


@dataclass(frozen=True)
class TaskTime:
    kind: str  # what the task did: "document_steps", "shuffle_map", "shuffle_reduce"
    worker: int  # process id of the Ray worker that ran it
    cpu_s: float
    wall_s: float


def balanced_makespan(cpu_s: list[float], workers: int) -> float:
    """The busiest worker's CPU seconds when tasks go, longest first, to the least busy worker:
    what one stage of tasks takes on `workers` idle cores, whatever order the host ran them in."""
    loads = [0.0] * workers
    for seconds in sorted(cpu_s, reverse=True):
        loads[loads.index(min(loads))] += seconds
    return max(loads)


@dataclass
class RunTimings:
    stages: list[list[TaskTime]] = field(default_factory=list)  # tasks that may run at once; stages run in turn
    driver_cpu_s: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # phase -> driver CPU
    _open_phases: list[str] = field(default_factory=list)

    @property
    def tasks(self) -> list[TaskTime]:
        return [task for stage in self.stages for task in stage]

    def worker_cpu_s(self) -> dict[int, float]:
        per_worker: dict[int, float] = defaultdict(float)
        for task in self.tasks:
            per_worker[task.worker] += task.cpu_s
        return dict(per_worker)

    def summary(self) -> dict[str, Any]:
        workers = self.worker_cpu_s()
        by_kind: dict[str, float] = defaultdict(float)
        for task in self.tasks:
            by_kind[task.kind] += task.cpu_s
        serial = sum(self.driver_cpu_s.values())
        parallel = sum(workers.values())
        return {
            "tasks": len(self.tasks),
            "worker_processes": len(workers),
            "task_cpu_s_sum": parallel,
            "task_cpu_s_max_worker": max(workers.values(), default=0.0),
            "task_cpu_s_by_kind": dict(by_kind),
            "driver_cpu_s": serial,
            "driver_cpu_s_by_phase": dict(sorted(self.driver_cpu_s.items(), key=lambda item: -item[1])),
            "serial_fraction": serial / (serial + parallel) if serial + parallel else 0.0,
            "stages": len(self.stages),
            # Each stage's tasks balanced over 2 workers, stage after stage: the parallel part's
            # critical path on 2 idle cores (the per-worker sums above follow the host's scheduling).
            "task_cpu_s_balanced_2_workers": sum(balanced_makespan([t.cpu_s for t in stage], 2) for stage in self.stages),
        }


_current: RunTimings | None = None


@contextmanager
def collecting() -> Iterator[RunTimings]:
    """Collect the timings of everything run inside; not reentrant."""
    global _current
    _current = RunTimings()
    try:
        yield _current
    finally:
        _current = None


def record_tasks(stage: Iterable[TaskTime]) -> None:
    """Keep the timings of one stage: tasks that had no dependence on each other."""
    if _current is not None:
        _current.stages.append(list(stage))


@contextmanager
def driver_phase(name: str) -> Iterator[None]:
    """Charge the driver's CPU time inside to `name` (nested phases are charged to the innermost)."""
    if _current is None:
        yield
        return
    timings = _current
    timings._open_phases.append(name)
    started = time.process_time()
    try:
        yield
    finally:
        spent = time.process_time() - started
        timings._open_phases.pop()
        timings.driver_cpu_s[name] += spent
        if timings._open_phases:  # the parent phase's time excludes this one's
            timings.driver_cpu_s[timings._open_phases[-1]] -= spent


def timed(kind: str, fn: Callable[..., Result], *args: Any) -> tuple[Result, TaskTime]:
    """`fn(*args)` and the CPU and wall seconds it took in this process (run inside a Ray task)."""
    cpu, wall = time.process_time(), time.perf_counter()
    result = fn(*args)
    return result, TaskTime(kind, os.getpid(), time.process_time() - cpu, time.perf_counter() - wall)
