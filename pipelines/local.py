"""Run the lifecycle pipeline on this machine with KFP's local SubprocessRunner.

One MLflow parent run per pipeline run; run-scoped KFP root, TMPDIR, step events and the log of
every step (KFP's own output: each step's inputs, its streamed output, warnings) under
LLAMAOPS_HOME/runs/<run_id>/; a record at LLAMAOPS_HOME/runs/<run_id>.json. The terminal gets only
the step events (`progress`). Resuming reuses the run id, the parent MLflow run and the artifact
URIs, so finished steps are skipped and training continues from its checkpoints.
"""
import contextlib
import json
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llamaops.platform.config import Preset
from llamaops.platform.deploy import load_eval_report, model_name_for
from llamaops.platform.store import home, is_complete, run_uri
from llamaops.platform.tracking import PipelineTracker, resolve_tracking_uri
from llamaops.platform.tracking.run_report import report_location
from llamaops.platform.train.ray_runner import shared_local_ray

from .errors import PipelineError
from .events import EVENTS_ENV, EventFollower, StepEvent, step_log_file
from .lifecycle import build_pipeline
from .preflight import preflight
from .runs import RunRecord, check_run_id, load_run, run_dir, save_run
from .step import EXPERIMENT

Progress = Callable[[StepEvent], None]


@dataclass(frozen=True)
class LocalRunResult:
    record: RunRecord
    tracking_uri: str
    eval_summary: dict[str, Any]  # eval metrics and the gate verdict; empty if eval did not finish
    registration: dict[str, Any]  # the register step's result; empty if it did not run
    report: str | None = None  # the run report's file (or artifact URI); None if register did not run


def new_run_id(preset: Preset) -> str:
    return f"{preset.name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def _first_difference(recorded: Any, current: Any, path: str = "") -> str | None:
    if isinstance(recorded, dict) and isinstance(current, dict):
        for key in list(recorded) + [key for key in current if key not in recorded]:
            found = _first_difference(recorded.get(key), current.get(key), f"{path}{key}.")
            if found:
                return found
        return None
    return None if recorded == current else f"{path.rstrip('.')} was {recorded!r}, now {current!r}"


# What a failed long-context gate tells the user to change before resuming: how far a stage may
# train on and how close it must come. They never change a finished step's output.
RESUMABLE_GATE_SETTINGS = (
    "max_short_context_loss_increase", "needle_must_pass", "max_extra_steps_per_stage", "check_every_extra_steps"
)


def _fixed_settings(preset_values: dict) -> dict:
    """The preset's settings a resumed run must keep: all but the gate's resumable ones."""
    gate = preset_values.get("long_context", {}).get("gate", {})
    kept_gate = {key: value for key, value in gate.items() if key not in RESUMABLE_GATE_SETTINGS}
    return preset_values | {"long_context": preset_values.get("long_context", {}) | {"gate": kept_gate}}


def _resumed(resume: str, preset: Preset) -> RunRecord:
    record = load_run(resume)
    current = preset.model_dump(mode="json")
    difference = _first_difference(_fixed_settings(json.loads(record.preset_json)), _fixed_settings(current))
    if difference:
        raise PipelineError(
            f"run {resume} was started with other settings ({difference}); "
            "resume it with the same preset, --config and --set (only long_context.gate's"
            f" {', '.join(RESUMABLE_GATE_SETTINGS)} may change), or start a new run"
        )
    record.preset_json = preset.model_dump_json()
    return record


@contextmanager
def _run_environment(folder: Path) -> Iterator[None]:
    """TMPDIR and the events file for the step processes, restored afterwards."""
    saved = {key: os.environ.get(key) for key in ("TMPDIR", EVENTS_ENV)}
    tmp = folder / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    os.environ["TMPDIR"] = str(tmp)
    os.environ[EVENTS_ENV] = str(folder / "events.jsonl")
    tempfile.tempdir = None
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        tempfile.tempdir = None


@contextmanager
def _following(path: Path, on_event: Callable[[StepEvent], None]) -> Iterator[None]:
    follower, stop = EventFollower(path), threading.Event()

    def poll() -> None:
        while not stop.wait(0.5):
            for event in follower.new_events():
                on_event(event)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        for event in follower.new_events():
            on_event(event)


def submit_local(
    preset: Preset,
    run_id: str | None = None,
    resume: str | None = None,
    tracking_uri: str | None = None,
    artifact_root: str | None = None,
    progress: Progress | None = None,
) -> LocalRunResult:
    """Run the whole lifecycle of `preset` here; raises PipelineError on a failed step after recording it."""
    if resume:
        record = _resumed(resume, preset)
        tracking, root = record.tracking_uri, record.artifact_root
    else:
        run_id = run_id or new_run_id(preset)
        check_run_id(run_id)
        tracking = resolve_tracking_uri(tracking_uri)
        root = artifact_root or (home() / "artifacts").as_uri()
    preflight(preset, tracking, root)

    if resume:
        tracker = PipelineTracker(tracking, EXPERIMENT, record.run_id, preset.name, resume_run_id=record.mlflow_run_id)
        record.status, record.ended_at, record.error, record.pid = "running", None, None, os.getpid()
    else:
        if (run_dir(run_id)).exists():
            raise PipelineError(f"run {run_id} exists already; pass --resume {run_id} to continue it")
        tracker = PipelineTracker(tracking, EXPERIMENT, run_id, preset.name)
        tracker.log_params(preset.model_dump(mode="json"))
        record = RunRecord(run_id, preset.name, preset.model_dump_json(), tracking, root, tracker.run_id,
                           started_at=time.time())
    save_run(record)
    folder = run_dir(record.run_id)
    folder.mkdir(parents=True, exist_ok=True)

    registration: dict[str, Any] = {}
    failed: list[StepEvent] = []

    def on_event(event: StepEvent) -> None:
        nonlocal registration
        if event.status == "failed":
            failed.append(event)
        if event.status in ("finished", "skipped") and event.step not in record.stages_done:
            record.stages_done.append(event.step)
            if event.step == "register":
                registration = event.detail
            save_run(record)
        if progress:
            progress(event)

    error: BaseException | None = None
    with _run_environment(folder), _following(folder / "events.jsonl", on_event):
        try:
            with shared_local_ray(_ray_workers(preset)):
                _execute(preset, record, folder)
        except BaseException as failure:  # recorded, then re-raised below (a Ray that cannot start too)
            error = failure
    record.ended_at = time.time()
    record.status = "failed" if error else "succeeded"
    record.model_version = registration.get("version")
    record.error = (f"step {failed[0].step}: {failed[0].detail.get('error', '')}" if failed else _one_line(error)) \
        if error else None
    save_run(record)
    tracker.finish("FAILED" if error else "FINISHED")
    if isinstance(error, KeyboardInterrupt) or (error and not isinstance(error, Exception)):
        raise error
    if error:
        log = step_log_file(folder, failed[0].step) if failed else log_path(record.run_id)
        raise PipelineError(f"run {record.run_id} failed: {record.error}; its log: {log}; "
                            f"fix it and `--resume {record.run_id}`")
    return LocalRunResult(record, tracking, _eval_summary(record), registration,
                          report_location(tracking, record.mlflow_run_id))


def _ray_workers(preset: Preset) -> int:
    """The most one-CPU Ray workers a step of the run asks for at once."""
    return max(preset.data.workers, *(layout.world_size for layout in preset.layouts().values()))


def log_path(run_id: str) -> Path:
    """Every step's output of a local run, across its attempts."""
    return run_dir(run_id) / "steps.log"


def _execute(preset: Preset, record: RunRecord, folder: Path) -> None:
    """The pipeline on KFP's local runner, whose output (it prints to whatever sys.stdout is)
    goes to the run's log instead of the terminal."""
    from kfp import local

    with log_path(record.run_id).open("a", encoding="utf-8") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        print(f"==== {time.strftime('%Y-%m-%d %H:%M:%S')} run {record.run_id}", flush=True)
        local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(folder / "kfp"))
        pipeline = build_pipeline(preset, local=True)
        pipeline(
            preset_json=record.preset_json,
            run_id=record.run_id,
            artifact_root=record.artifact_root,
            tracking_uri=record.tracking_uri,
            parent_run_id=record.mlflow_run_id,
            model_name=model_name_for(preset),
        )


def _eval_summary(record: RunRecord) -> dict[str, Any]:
    report_uri = run_uri(record.run_id, "eval", record.artifact_root)
    if not is_complete(report_uri):
        return {}
    report = load_eval_report(report_uri)
    return {"metrics": report.get("metrics", {}), "gate": report.get("gate", {}), "report_uri": report_uri}


def _one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
