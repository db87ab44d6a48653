"""Step events of a local run, as JSON lines in the file LLAMAOPS_RUN_EVENTS names: started /
finished / skipped / failed from each step's process, and progress from a training stage's rank 0
(step of total, loss, tokens/s, ETA) while it runs. The submitting process follows the file to show
the run. Without the variable (on a cluster) nothing is written.

Here, below the pipeline layer, so training workers can report without knowing of pipelines.
"""
import json
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

EVENTS_ENV = "LLAMAOPS_RUN_EVENTS"
STEP_ENV = "LLAMAOPS_RUN_STEP"  # the step a local run's step process runs, for its stage's progress
Status = Literal["started", "progress", "finished", "skipped", "failed"]


@dataclass(frozen=True)
class StepEvent:
    step: str
    status: Status
    seconds: float = 0.0  # time the step spent, for finished / skipped / failed
    detail: dict[str, Any] = field(default_factory=dict)  # metrics, outputs, progress or the error line
    at: float = field(default_factory=time.time)


def emit(event: StepEvent, path: str | None = None) -> None:
    """Append `event` to the events file (`path`, else the one LLAMAOPS_RUN_EVENTS names, else none)."""
    path = path or os.environ.get(EVENTS_ENV)
    if not path:
        return
    with open(path, "a", encoding="utf-8") as file:
        file.write(json.dumps(asdict(event), default=str) + "\n")


@dataclass(frozen=True)
class ProgressChannel:
    """Where a training stage reports progress: picklable, so it travels to Ray workers in a job."""

    path: str
    step: str
    every_s: float = 5.0

    @classmethod
    def from_env(cls) -> "ProgressChannel | None":
        """The channel of this local run's step; None outside a local run."""
        path, step = os.environ.get(EVENTS_ENV), os.environ.get(STEP_ENV)
        return cls(path, step) if path and step else None


class ProgressReporter:
    """Reports a loop's steps through a channel, at most every `every_s` seconds and at its last
    step, with the ETA from the mean step time so far."""

    def __init__(self, channel: ProgressChannel | None, total: int, first: int = 0, clock=time.monotonic):
        self.channel, self.total, self.first, self.clock = channel, total, first, clock
        self.started = clock()
        self.last = float("-inf")

    def step(self, done: int, figures: dict[str, float]) -> None:
        if self.channel is None:
            return
        now = self.clock()
        if now - self.last < self.channel.every_s and done < self.total:
            return
        self.last = now
        per_step = (now - self.started) / max(done - self.first, 1)
        emit(StepEvent(self.channel.step, "progress", now - self.started, {
            "done": done, "total": self.total, "eta_s": round(per_step * (self.total - done), 1),
            **{key: round(value, 4) for key, value in figures.items()}}), self.channel.path)
