"""One MLflow parent run per pipeline run, one nested child run per stage.

KFP runs every stage in its own process, so a stage attaches to the parent by run id
(`PipelineTracker.attach`) instead of sharing in-memory state. Child runs are found by stage name
under the parent, so a re-run or resumed stage continues its run instead of adding another.
"""
import json
import logging
import os
import re
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..stage import StageResult
from .connection import TrackingError, redacted, resolve_tracking_uri, sqlite_path, tracking_client

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

PARENT_TAG = "mlflow.parentRunId"
ROLE_TAG = "llamaops.role"
PRESET_TAG = "llamaops.preset"
STAGE_TAG = "llamaops.stage"
RUN_TAG = "llamaops.run"  # the pipeline run id, so a retried first step finds its parent run
INPUT_TAG = "llamaops.input."  # + the upstream step: the artifact a stage read (lineage)
COMMIT_TAG = "mlflow.source.git.commit"  # MLflow's own key: its UI shows it as the run's source version
COMMIT_ENV = "LLAMAOPS_GIT_COMMIT"  # set in the image at build time, where there is no checkout
_STAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_PARAMS_PER_BATCH = 100
_MAX_PARAM_CHARS = 6000

Status = Literal["FINISHED", "FAILED", "KILLED"]


def _flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = str(value)[:_MAX_PARAM_CHARS]
    return flat


def _json_text(report: Mapping[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=True, default=str)


class _RunLogger:
    """What parent and child runs share: params, metrics and JSON reports on one run."""

    def __init__(self, client: "MlflowClient", run_id: str, tracking_uri: str) -> None:
        self._client = client
        self.run_id = run_id
        self.tracking_uri = tracking_uri

    @property
    def client(self) -> "MlflowClient":
        return self._client

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        logged = self._client.get_run(self.run_id).data.params
        fresh: list[Param] = []
        for key, value in _flatten(params).items():
            if key not in logged:
                fresh.append(Param(key, value))
            elif logged[key] != value:
                # MLflow params are immutable; a resumed run keeps its first value.
                log.warning("run %s keeps param %s=%r (new value %r not logged)", self.run_id, key, logged[key], value)
        for start in range(0, len(fresh), _PARAMS_PER_BATCH):
            self._client.log_batch(self.run_id, params=fresh[start:start + _PARAMS_PER_BATCH])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, step or 0) for key, value in metrics.items()]
        if batch:
            self._client.log_batch(self.run_id, metrics=batch)

    def log_report(self, name: str, report: Mapping[str, Any]) -> None:
        """Store `report` as the JSON artifact `<name>.json` of this run."""
        self._client.log_text(self.run_id, _json_text(report), f"{name}.json")

    def log_text(self, file_name: str, text: str) -> None:
        """Store `text` as the artifact `file_name` of this run (e.g. a markdown report)."""
        self._client.log_text(self.run_id, text, file_name)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self._client.set_tag(self.run_id, key, value)


class StageRun(_RunLogger):
    """The MetricsSink a stage logs into: a nested child run of the pipeline run."""

    def log_result(self, result: StageResult) -> None:
        self.log_metrics(result.metrics)
        if result.report:
            self.log_report("report", result.report)
        for name, uri in result.outputs.items():
            self._client.set_tag(self.run_id, f"llamaops.output.{name}", uri)


class PipelineTracker(_RunLogger):
    """The parent run of one pipeline run; `stage()` gives each stage its child run.

    Starts a new parent run, or continues `resume_run_id` so a resumed pipeline keeps one MLflow run.
    """

    def __init__(
        self,
        tracking_uri: str | None,
        experiment: str,
        run_name: str,
        preset_name: str,
        resume_run_id: str | None = None,
    ) -> None:
        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        client = tracking_client(self.tracking_uri)
        if resume_run_id:
            run = _pipeline_run(client, resume_run_id, self.tracking_uri)
            client.update_run(resume_run_id, status="RUNNING")
        else:
            experiment_id = _experiment_id(client, experiment, self.tracking_uri)
            tags = {ROLE_TAG: "pipeline", PRESET_TAG: preset_name, RUN_TAG: run_name}
            commit = source_commit()
            if commit:
                tags[COMMIT_TAG] = commit
            run = client.create_run(experiment_id, run_name=run_name, tags=tags)
            client.log_param(run.info.run_id, "preset", preset_name)
        self._bind(client, run)

    @classmethod
    def attach(cls, tracking_uri: str | None, parent_run_id: str) -> "PipelineTracker":
        """The tracker of an existing pipeline run, e.g. inside a stage's own process."""
        tracker = cls.__new__(cls)
        tracker.tracking_uri = resolve_tracking_uri(tracking_uri)
        client = tracking_client(tracker.tracking_uri)
        tracker._bind(client, _pipeline_run(client, parent_run_id, tracker.tracking_uri))
        return tracker

    @classmethod
    def for_pipeline_run(cls, tracking_uri: str | None, experiment: str, run_name: str,
                         preset_name: str) -> tuple["PipelineTracker", bool]:
        """The parent run of pipeline run `run_name`: the one a previous attempt made, else a new
        one. Returns (tracker, created)."""
        uri = resolve_tracking_uri(tracking_uri)
        client = tracking_client(uri)
        found = client.get_experiment_by_name(experiment)
        existing = client.search_runs(
            [found.experiment_id],
            filter_string=f"tags.`{RUN_TAG}` = '{run_name}' AND tags.`{ROLE_TAG}` = 'pipeline'",
            max_results=1,
        ) if found is not None else []
        if existing:
            return cls.attach(uri, existing[0].info.run_id), False
        return cls(uri, experiment, run_name, preset_name), True

    def _bind(self, client: "MlflowClient", run: "Run") -> None:
        super().__init__(client, run.info.run_id, self.tracking_uri)
        self.experiment_id = run.info.experiment_id

    @contextmanager
    def stage(self, name: str, params: Mapping[str, Any] | None = None,
              inputs: Mapping[str, str] | None = None) -> Iterator[StageRun]:
        """A child run named `name` under this pipeline run, tagged with the artifacts it reads
        (`inputs`: upstream step -> URI): FINISHED if the block succeeds, else FAILED."""
        if not _STAGE_NAME.match(name):
            raise TrackingError(f"stage name '{name}' must be letters, digits, '_', '.' or '-'")
        child = StageRun(self._client, self._child_run_id(name), self.tracking_uri)
        if params:
            child.log_params(params)
        if inputs:
            child.set_tags({INPUT_TAG + step: uri for step, uri in inputs.items()})
        try:
            yield child
        except BaseException:
            self._client.set_terminated(child.run_id, "FAILED")
            raise
        self._client.set_terminated(child.run_id, "FINISHED")

    def _child_run_id(self, name: str) -> str:
        existing = self._client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{PARENT_TAG}` = '{self.run_id}' AND tags.`{STAGE_TAG}` = '{name}'",
            max_results=1,
        )
        if existing:
            self._client.update_run(existing[0].info.run_id, status="RUNNING")
            return existing[0].info.run_id
        run = self._client.create_run(
            self.experiment_id, run_name=name, tags={PARENT_TAG: self.run_id, STAGE_TAG: name, ROLE_TAG: "stage"}
        )
        return run.info.run_id

    def finish(self, status: Status = "FINISHED") -> None:
        self._client.set_terminated(self.run_id, status)

    def __enter__(self) -> "PipelineTracker":
        return self

    def __exit__(self, error_type: type[BaseException] | None, *_: object) -> None:
        self.finish("FINISHED" if error_type is None else "FAILED")


_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # in a checkout, the repository root


def source_commit(package_root: Path = _PACKAGE_ROOT) -> str | None:
    """The llamaops commit running: the image's build-time value, else the HEAD of the checkout
    the package is (None for an installed wheel, even inside some other repository)."""
    if os.environ.get(COMMIT_ENV):
        return os.environ[COMMIT_ENV]
    if not (package_root / ".git").exists():
        return None
    try:
        found = subprocess.run(["git", "-C", str(package_root), "rev-parse", "HEAD"], capture_output=True, text=True,
                               timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return found.stdout.strip() if found.returncode == 0 else None


def _pipeline_run(client: "MlflowClient", run_id: str, tracking_uri: str) -> "Run":
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise TrackingError(f"no MLflow run '{run_id}' at {redacted(tracking_uri)}; check the parent run id") from None
    if run.data.tags.get(ROLE_TAG) != "pipeline":
        raise TrackingError(f"MLflow run '{run_id}' is not a llamaops pipeline run")
    return run


def _experiment_id(client: "MlflowClient", name: str, tracking_uri: str) -> str:
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if tracking_uri.startswith("sqlite:"):
        # Without it MLflow puts artifacts in ./mlruns of whatever the current directory is.
        location = (sqlite_path(tracking_uri).parent / "mlflow-artifacts").as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:  # another process created it first
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id
