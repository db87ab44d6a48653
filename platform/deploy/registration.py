"""Register an evaluated model in the MLflow registry: alias `candidate` always, `production` only
when the promotion gate passed and, with `eval_gate.max_worsening_vs_production` set, no gated rate
is worse than the current production version's by more than that. Each version carries its gated
metrics as tags (`llamaops.metric.NAME`), so the next registration can compare with it. Registering
the same artifact twice (a resumed run) reuses its version."""
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from llamaops.platform.config import Preset
from llamaops.platform.eval.gate import GATED_METRICS, judge_against_baseline
from llamaops.platform.store import fetched
from llamaops.platform.tracking import register_model, set_alias, tracking_client
from llamaops.platform.tracking.registry import METRIC_TAG, version_metrics

from .serving import PRODUCTION_ALIAS, serve_command

CANDIDATE_ALIAS = "candidate"
EVAL_REPORT_FILE = "report.json"


class DeployError(ValueError):
    """The model cannot be registered, promoted or deployed as asked; the message (one line) says why."""


@dataclass(frozen=True)
class Registration:
    model_name: str
    version: str
    source_uri: str
    gate_passed: bool
    aliases: list[str]
    failed_thresholds: list[str] = field(default_factory=list)
    serve_command: str | None = None  # set only when promoted
    # The production version compared with, its metrics and the relative verdicts (None: no comparison).
    compared_with: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def model_name_for(preset: Preset) -> str:
    return f"llamaops-{preset.name}"


def load_eval_report(report_uri: str) -> dict[str, Any]:
    """The JSON report the eval stage published at `report_uri`."""
    with fetched(report_uri) as folder:
        path = folder / EVAL_REPORT_FILE
        if not path.is_file():
            raise DeployError(f"eval artifact {report_uri} has no {EVAL_REPORT_FILE}; re-run the eval stage")
        return json.loads(path.read_text())


def _gate_passed(report: dict[str, Any]) -> tuple[bool, list[str]]:
    gate = report.get("gate")
    if not isinstance(gate, dict) or "passed" not in gate:
        raise DeployError("eval report has no gate verdict; re-run the eval stage")
    return bool(gate["passed"]), list(gate.get("failed", []))


def _existing_version(model_name: str, source_uri: str, tracking_uri: str | None) -> str | None:
    client = tracking_client(tracking_uri)
    for version in client.search_model_versions(f"name = '{model_name}'"):
        if version.source == source_uri:
            return str(version.version)
    return None


def run_register(
    preset: Preset,
    model_uri: str,
    eval_report: dict[str, Any],
    model_name: str | None = None,
    run_id: str | None = None,
    tracking_uri: str | None = None,
) -> Registration:
    """Register `model_uri` (the model `eval_report` judged) and promote it if its gate passed."""
    name = model_name or model_name_for(preset)
    evaluated = eval_report.get("model_uri")
    if evaluated != model_uri:
        raise DeployError(f"eval report judged {evaluated}, not {model_uri}; evaluate this model before registering it")
    passed, failed = _gate_passed(eval_report)
    version = _existing_version(name, model_uri, tracking_uri)
    if version is None:
        version = register_model(name, model_uri, run_id=run_id, alias=CANDIDATE_ALIAS, tracking_uri=tracking_uri)
    else:
        set_alias(name, version, CANDIDATE_ALIAS, tracking_uri=tracking_uri)
    measured = {m: float(v) for m, v in eval_report.get("metrics", {}).items() if m in GATED_METRICS}
    client = tracking_client(tracking_uri)
    for metric, value in measured.items():
        client.set_model_version_tag(name, version, METRIC_TAG + metric, str(value))
    compared_with = None
    production = _production_version(name, tracking_uri)
    max_worsening = preset.eval_gate.max_worsening_vs_production
    if max_worsening is not None and production is not None and str(production.version) != version:
        baseline = version_metrics(production)
        verdicts = judge_against_baseline(measured, baseline, max_worsening)
        compared_with = {"version": str(production.version), "metrics": baseline, "verdicts": [asdict(v) for v in verdicts]}
        failed += [v.metric for v in verdicts if not v.passed]
        passed = passed and all(v.passed for v in verdicts)
    aliases = [CANDIDATE_ALIAS]
    if passed:
        set_alias(name, version, PRODUCTION_ALIAS, tracking_uri=tracking_uri)
        aliases.append(PRODUCTION_ALIAS)
    return Registration(
        model_name=name,
        version=version,
        source_uri=model_uri,
        gate_passed=passed,
        aliases=aliases,
        failed_thresholds=failed,
        serve_command=serve_command(name) if passed else None,
        compared_with=compared_with,
    )


def _production_version(name: str, tracking_uri: str | None):
    from mlflow.exceptions import MlflowException

    try:
        return tracking_client(tracking_uri).get_model_version_by_alias(name, PRODUCTION_ALIAS)
    except MlflowException:  # none yet: the first promotion has nothing to compare with
        return None
