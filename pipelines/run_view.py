"""What `pipeline status` and `pipeline logs` show of a local run: its record, each step's latest
state from the run's events (every attempt of a resumed run), and each step's own log file."""
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import PipelineError
from .events import StepEvent, step_log_file
from .runs import load_run, run_dir


@dataclass(frozen=True)
class StepState:
    step: str
    status: str  # the step's latest event: started (running, or cut off), finished, skipped, failed
    seconds: float  # of its last attempt; 0 while it runs
    error: str | None
    log: Path


def step_states(run_id: str) -> list[StepState]:
    """Each step of local run `run_id` that has started, in the order it first started; a run id with
    no local run is one line naming the command that lists them."""
    load_run(run_id)
    return _states(run_id)


def _states(run_id: str) -> list[StepState]:
    events = run_dir(run_id) / "events.jsonl"
    latest: dict[str, StepEvent] = {}
    if events.is_file():
        for line in events.read_text(encoding="utf-8").splitlines():
            if line.strip():
                event = StepEvent(**json.loads(line))
                latest[event.step] = event
    return [StepState(step, event.status, event.seconds, event.detail.get("error"),
                      step_log_file(run_dir(run_id), step)) for step, event in latest.items()]


def run_status(run_id: str) -> dict[str, Any]:
    """The run's record and its steps, as `pipeline status --json` prints them."""
    record = load_run(run_id)
    ended = record.ended_at or time.time()
    return {"run_id": record.run_id, "preset": record.preset, "status": record.shown_status,
            "started_at": record.started_at, "ended_at": record.ended_at,
            "seconds": round(ended - record.started_at, 1), "model_version": record.model_version,
            "error": record.error, "mlflow_run_id": record.mlflow_run_id, "tracking_uri": record.tracking_uri,
            "artifact_root": record.artifact_root,
            "steps": [{**asdict(state), "log": str(state.log)} for state in _states(run_id)]}


def step_log(run_id: str, step: str) -> Path:
    """The log file of step `step` of local run `run_id`; one line naming the steps there are if not."""
    states = {state.step: state for state in step_states(run_id)}
    if step not in states:
        known = ", ".join(states) or "none has started yet"
        raise PipelineError(f"run {run_id} has no step '{step}' (steps: {known})")
    if not states[step].log.is_file():
        raise PipelineError(f"step {step} of run {run_id} has no log file (a run from before per-step logs: "
                            f"see {run_dir(run_id) / 'steps.log'})")
    return states[step].log
