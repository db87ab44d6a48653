"""What every pipeline step does around its stage function, in the step's own process.

Resolve the output URI from (artifact root, run id, step), skip if that artifact is already
complete (a resumed run), otherwise run the stage inside its MLflow child run and report events.
"""
import math
import re
import time
from typing import NamedTuple

from llamaops.platform.config import Preset
from llamaops.platform.deploy import load_eval_report, run_register
from llamaops.platform.deploy.serving import PRODUCTION_ALIAS
from llamaops.platform.store import is_complete, run_uri
from llamaops.platform.tracking import PipelineTracker
from llamaops.platform.tracking.run_report import log_run_report

from .calls import call_stage
from .errors import PipelineError
from .events import StepEvent, emit, step_output
from .runs import check_run_id
from .stages import REGISTER_STEP, stage_spec

EXPERIMENT = "llamaops"  # the MLflow experiment of every pipeline run
_NOT_IN_RUN_ID = re.compile(r"[^A-Za-z0-9_.-]+")


class RunIds(NamedTuple):
    run_id: str  # names the run's artifact folders
    parent_run_id: str  # the MLflow parent run of its stages


def start_run(preset_json: str, run_id: str, tracking_uri: str, parent_run_id: str, kfp_run_name: str) -> RunIds:
    """The first step: settle the run's ids so a run started from nothing but its parameters (the KFP
    UI, kfp.Client, a recurring run, `submit --host`) works like `submit --local`. An empty run id
    becomes KFP's own run name; an empty parent run id gets its MLflow parent run, the same one
    again if this step is retried."""
    preset = Preset.model_validate_json(preset_json)
    run_id = run_id or _NOT_IN_RUN_ID.sub("-", kfp_run_name).strip("-.")[:100]
    check_run_id(run_id)
    if parent_run_id:
        return RunIds(run_id, PipelineTracker.attach(tracking_uri or None, parent_run_id).run_id)
    tracker, created = PipelineTracker.for_pipeline_run(tracking_uri or None, EXPERIMENT, run_id, preset.name)
    if created:
        tracker.log_params(preset.model_dump(mode="json"))
    return RunIds(run_id, tracker.run_id)


def check_run_parameters(run_id: str, parent_run_id: str) -> None:
    """Every step after `start` takes both ids from it: empty ones mean a step run outside the pipeline."""
    if not run_id or not parent_run_id:
        raise PipelineError(
            "pipeline parameters run_id and parent_run_id are empty; start runs with `llamaops pipeline submit`"
        )


def one_line_error(error: BaseException) -> str:
    """What a failed step reports: the error type and the first line of its message."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


def run_step(
    step: str, preset_json: str, run_id: str, artifact_root: str, tracking_uri: str, parent_run_id: str,
    inputs: list[str],
) -> str:
    """Run one lifecycle stage of pipeline run `run_id`; return the URI of its published output."""
    with step_output(step):
        return _run_step(step, preset_json, run_id, artifact_root, tracking_uri, parent_run_id, inputs)


def _run_step(
    step: str, preset_json: str, run_id: str, artifact_root: str, tracking_uri: str, parent_run_id: str,
    inputs: list[str],
) -> str:
    check_run_parameters(run_id, parent_run_id)
    preset = Preset.model_validate_json(preset_json)
    spec = stage_spec(preset, step)
    output_uri = run_uri(run_id, step, artifact_root or None)
    started = time.monotonic()
    emit(StepEvent(step, "started"))
    if is_complete(output_uri):
        emit(StepEvent(step, "skipped", time.monotonic() - started, {"output": output_uri}))
        return output_uri
    tracker = PipelineTracker.attach(tracking_uri or None, parent_run_id)
    try:
        with tracker.stage(step, {"output_uri": output_uri}, inputs=dict(zip(spec.inputs, inputs))) as child:
            result = call_stage(spec, preset, inputs, output_uri, child)
            child.log_result(result)
            if result.outputs.get(spec.output) != output_uri:
                raise PipelineError(f"step {step} stopped without publishing {output_uri}; resume the run")
    except BaseException as error:
        emit(StepEvent(step, "failed", time.monotonic() - started, {"error": one_line_error(error)}))
        raise
    emit(StepEvent(step, "finished", time.monotonic() - started, {"output": output_uri, "metrics": result.metrics}))
    return output_uri


class Registered(NamedTuple):
    version: str
    promoted: bool


def register_step(
    preset_json: str, run_id: str, tracking_uri: str, parent_run_id: str, model_uri: str, report_uri: str,
    model_name: str,
) -> Registered:
    """Register the evaluated model; promote it when the gate passed."""
    with step_output(REGISTER_STEP):
        return _register_step(preset_json, run_id, tracking_uri, parent_run_id, model_uri, report_uri, model_name)


def _register_step(
    preset_json: str, run_id: str, tracking_uri: str, parent_run_id: str, model_uri: str, report_uri: str,
    model_name: str,
) -> Registered:
    check_run_parameters(run_id, parent_run_id)
    preset = Preset.model_validate_json(preset_json)
    started = time.monotonic()
    emit(StepEvent(REGISTER_STEP, "started"))
    tracker = PipelineTracker.attach(tracking_uri or None, parent_run_id)
    try:
        with tracker.stage(REGISTER_STEP, {"model_uri": model_uri, "report_uri": report_uri}) as child:
            evaluated = load_eval_report(report_uri)
            registration = run_register(
                preset, model_uri, evaluated, model_name, run_id=parent_run_id, tracking_uri=tracking_uri or None,
            )
            child.log_report("registration", registration.as_dict())
            child.log_metrics({"model_version": float(registration.version)})
        # The run's headline figures on the parent run, where a list of runs shows them.
        tracker.log_metrics({**{name: float(value) for name, value in evaluated.get("metrics", {}).items()
                                if isinstance(value, (int, float)) and math.isfinite(value)},
                             "model_version": float(registration.version),
                             "promoted": float(PRODUCTION_ALIAS in registration.aliases)})
        log_run_report(tracking_uri or None, parent_run_id, registration.as_dict())
    except BaseException as error:
        emit(StepEvent(REGISTER_STEP, "failed", time.monotonic() - started, {"error": one_line_error(error)}))
        raise
    emit(StepEvent(REGISTER_STEP, "finished", time.monotonic() - started, registration.as_dict()))
    return Registered(registration.version, PRODUCTION_ALIAS in registration.aliases)
