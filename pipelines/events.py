"""Following a local run's step events (platform/tracking/step_events.py writes them), and each
step's own output in a log file of its own. On a cluster (no LLAMAOPS_RUN_EVENTS) neither happens:
a step's output stays where its pod's log takes it.
"""
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from llamaops.platform.tracking.step_events import EVENTS_ENV, STEP_ENV, StepEvent, emit  # noqa: F401


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
    saved, named = (os.dup(1), os.dup(2)), os.environ.get(STEP_ENV)
    os.environ[STEP_ENV] = step  # the stage's training workers report progress as this step
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
        if named is None:
            os.environ.pop(STEP_ENV, None)
        else:
            os.environ[STEP_ENV] = named
