"""Step events of a local run (started / finished / skipped / failed), appended as JSON lines, and
each step's own output in a log file of its own.

Each KFP step runs in its own process; the submitting process follows the file to report progress.
The file is named by LLAMAOPS_RUN_EVENTS; without it (on a cluster) events are not written and a
step's output stays where its pod's log takes it.
"""
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

EVENTS_ENV = "LLAMAOPS_RUN_EVENTS"
Status = Literal["started", "finished", "skipped", "failed"]


@dataclass(frozen=True)
class StepEvent:
    step: str
    status: Status
    seconds: float = 0.0  # time the step spent, for finished / skipped / failed
    detail: dict[str, Any] = field(default_factory=dict)  # metrics, outputs or the error line
    at: float = field(default_factory=time.time)


def emit(event: StepEvent) -> None:
    path = os.environ.get(EVENTS_ENV)
    if not path:
        return
    with open(path, "a", encoding="utf-8") as file:
        file.write(json.dumps(asdict(event), default=str) + "\n")


class EventFollower:
    """Reads the events appended since the last call; events of earlier attempts (a resumed run
    appends to the same file) are not replayed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = path.stat().st_size if path.is_file() else 0

    def new_events(self) -> list[StepEvent]:
        if not self.path.is_file():
            return []
        with self.path.open("r", encoding="utf-8") as file:
            file.seek(self._offset)
            text = file.read()
        complete = text[: text.rfind("\n") + 1]  # a line still being written waits for the next call
        self._offset += len(complete.encode("utf-8"))
        return [StepEvent(**json.loads(line)) for line in complete.splitlines() if line.strip()]


def step_log_file(run_folder: Path, step: str) -> Path:
    """Where a local run's step writes its output (and that of the Ray workers it drives)."""
    return run_folder / "steps" / f"{step}.log"


@contextmanager
def step_output(step: str) -> Iterator[None]:
    """In a local run, this process's stdout and stderr (file descriptors, so child processes and
    native code too) go to the step's log file while the step runs; elsewhere nothing changes."""
    events = os.environ.get(EVENTS_ENV)
    if not events:
        yield
        return
    log = step_log_file(Path(events).parent, step)
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        with log.open("ab") as file:
            os.dup2(file.fileno(), 1)
            os.dup2(file.fileno(), 2)
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        os.close(saved[0])
        os.close(saved[1])
