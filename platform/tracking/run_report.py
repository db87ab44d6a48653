"""The run report of one pipeline run: what its stages' child runs logged (metric histories, JSON
reports), drawn as figures and one self-contained HTML page, logged on the parent run under
`report/` so `mlflow ui` shows what the run did.

mlflow and matplotlib are imported lazily (through connection.py and report_figures.py).
"""
import base64
import html
import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import report_figures
from .connection import tracking_client
from .runs import PARENT_TAG, PRESET_TAG, RUN_TAG, STAGE_TAG

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

REPORT_FOLDER = "report"  # artifact folder on the parent run; a re-run overwrites the same paths
HTML_FILE = "run_report.html"
LOSS_LR, DATA_FUNNEL, NEEDLES, SCORECARD = "loss_lr.png", "data_funnel.png", "needles.png", "scorecard.png"
STAGE_REPORT, REGISTRATION_REPORT = "report.json", "registration.json"
DATA_STAGE, LONG_CONTEXT_STAGE, EVAL_STAGE, REGISTER_STAGE = "data", "long_context", "eval", "register"

# The metric a step's row shows: the first of these it logged (each belongs to one kind of step:
# data prep, rejection sampling, averaging, eval, register, and any training stage).
_HEADLINES = ("tokens_out", "mean_best_reward", "averaged_models", "multiple_choice_accuracy", "model_version",
              "final_loss")
_PROGRESS_BAR_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"

Figures = Mapping[str, bytes | str]  # file name -> PNG bytes, or the one line saying why it is absent


@dataclass(frozen=True)
class StageRecord:
    name: str  # the step, e.g. "pretrain" or "round2-dpo"
    run_id: str
    status: str  # the child run's: FINISHED, FAILED, RUNNING, KILLED
    metrics: dict[str, float]  # latest value of each
    report: dict[str, Any] | None  # its report.json, None if it logged none
    loss: list[tuple[int, float]]  # (step, value), one point per step
    lr: list[tuple[int, float]]


@dataclass(frozen=True)
class RunData:
    parent_run_id: str
    run_name: str
    preset: str | None
    started: str  # UTC, ISO 8601
    stages: list[StageRecord]  # in the order they started: the lifecycle's, the pipeline being a chain
    registration: dict[str, Any] | None  # Registration.as_dict()

    def stage(self, name: str) -> StageRecord | None:
        return next((stage for stage in self.stages if stage.name == name), None)


def collect_run_data(tracking_uri: str | None, parent_run_id: str) -> RunData:
    """Everything the report shows about pipeline run `parent_run_id`, read from its child runs."""
    client = tracking_client(tracking_uri)
    parent = client.get_run(parent_run_id)
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'",
        order_by=["attributes.start_time ASC"], max_results=1000,
    )
    stages = [_stage_record(client, child) for child in children]
    register = next((child for child in children if _stage_name(child) == REGISTER_STAGE), None)
    registration = _json_artifact(client, register.info.run_id, REGISTRATION_REPORT) if register else None
    return RunData(
        parent_run_id=parent_run_id,
        run_name=parent.data.tags.get(RUN_TAG) or parent.info.run_name or parent_run_id,
        preset=parent.data.params.get("preset") or parent.data.tags.get(PRESET_TAG),
        started=datetime.fromtimestamp(parent.info.start_time / 1000, timezone.utc).isoformat(timespec="seconds"),
        stages=stages,
        registration=registration,
    )


def _stage_name(run: Any) -> str:
    return run.data.tags.get(STAGE_TAG) or run.info.run_name


def _stage_record(client: "MlflowClient", run: Any) -> StageRecord:
    run_id = run.info.run_id
    metrics = dict(run.data.metrics)
    report = _json_artifact(client, run_id, STAGE_REPORT)
    loss = _history(client, run_id, "loss") if "loss" in metrics else []
    lr = _history(client, run_id, "lr") if "lr" in metrics else []
    if not loss and report and isinstance(report.get("history"), list):
        # MLflow is the source of truth; the report's history covers a run whose metrics were not logged.
        loss = _report_history(report["history"], "loss")
        lr = lr or _report_history(report["history"], "lr")
    return StageRecord(_stage_name(run), run_id, run.info.status, metrics, report, loss, lr)


def _history(client: "MlflowClient", run_id: str, key: str) -> list[tuple[int, float]]:
    """One point per step: a step logged twice (live, then again at the end) keeps its latest value."""
    latest: dict[int, tuple[int, float]] = {}
    for metric in client.get_metric_history(run_id, key):
        if metric.step not in latest or metric.timestamp >= latest[metric.step][0]:
            latest[metric.step] = (metric.timestamp, metric.value)
    return [(step, value) for step, (_, value) in sorted(latest.items())]


def _report_history(history: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    return [(int(entry["step"]), float(entry[key])) for entry in history if key in entry and "step" in entry]


def _json_artifact(client: "MlflowClient", run_id: str, path: str) -> dict[str, Any] | None:
    if path not in {artifact.path for artifact in client.list_artifacts(run_id)}:
        return None
    with tempfile.TemporaryDirectory() as folder, _no_progress_bar():
        return json.loads(Path(client.download_artifacts(run_id, path, folder)).read_text(encoding="utf-8"))


@contextmanager
def _no_progress_bar() -> Iterator[None]:
    """MLflow draws a progress bar per download: one per stage report would fill the step's log."""
    saved = os.environ.get(_PROGRESS_BAR_ENV)
    os.environ[_PROGRESS_BAR_ENV] = "false"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(_PROGRESS_BAR_ENV, None)
        else:
            os.environ[_PROGRESS_BAR_ENV] = saved


def build_figures(data: RunData) -> dict[str, bytes | str]:
    return {LOSS_LR: _loss_lr(data), DATA_FUNNEL: _data_funnel(data), NEEDLES: _needles(data),
            SCORECARD: _scorecard(data)}


def _loss_lr(data: RunData) -> bytes | str:
    curves = [report_figures.StageCurve(stage.name, stage.loss, stage.lr) for stage in data.stages if stage.loss]
    return report_figures.loss_lr_png(curves) if curves else "No stage of this run logged a training loss."


def _data_funnel(data: RunData) -> bytes | str:
    stage = data.stage(DATA_STAGE)
    if stage is None:
        return "This run has no data stage."
    steps = (stage.report or {}).get("steps")
    if not steps:
        return "The data stage logged no report of its steps."
    return report_figures.data_funnel_png(steps)


def _needles(data: RunData) -> bytes | str:
    stage = data.stage(LONG_CONTEXT_STAGE)
    if stage is None:
        return "This run has no long-context stage, so no needle-in-a-haystack results."
    gate = (stage.report or {}).get("gate") or {}
    depths = gate.get("needle_depths") or []
    found = {int(entry["seq_len"]): entry.get("needle_accuracy") for entry in gate.get("stages", [])}
    if not found:  # no report (e.g. a failed stage): the flat metrics long_context.gate.<seq_len>.needle_accuracy
        found = {int(name.split(".")[2]): value for name, value in stage.metrics.items()
                 if name.startswith("long_context.gate.") and name.endswith(".needle_accuracy")}
    if not any(value is not None for value in found.values()):
        return "The long-context stage recorded no needle results (long_context.gate.needle_depths is empty)."
    lengths = sorted(found)
    depth_list = ", ".join(f"{depth:g}" for depth in depths) or "as configured"
    # The gate records one accuracy per stage length over all depths: one row, labelled as such.
    grid = report_figures.NeedleGrid(
        lengths, ["all depths"], [[found[length] for length in lengths]],
        note=f"one figure per stage length over depths {depth_list} together (per-depth results are not recorded)",
    )
    return report_figures.needles_png(grid)


def _scorecard(data: RunData) -> bytes | str:
    gate = _eval_gate(data)
    if gate is None:
        return "This run has no eval report with a gate verdict."
    production = (data.registration or {}).get("compared_with")
    return report_figures.scorecard_png(gate.get("verdicts", []), production)


def _eval_report(data: RunData) -> dict[str, Any] | None:
    stage = data.stage(EVAL_STAGE)
    return stage.report if stage is not None else None


def _eval_gate(data: RunData) -> dict[str, Any] | None:
    gate = (_eval_report(data) or {}).get("gate")
    return gate if isinstance(gate, dict) else None


def log_run_report(tracking_uri: str | None, parent_run_id: str, registration: dict[str, Any] | None) -> list[str]:
    """Draw the figures and the HTML report of pipeline run `parent_run_id` and log them on it under
    `report/`; returns their artifact paths. `registration` (Registration.as_dict()) wins over the
    one the register step logged, which may not be logged yet."""
    data = collect_run_data(tracking_uri, parent_run_id)
    if registration is not None:
        data = replace(data, registration=registration)
    figures = build_figures(data)
    drawn = [name for name, figure in figures.items() if isinstance(figure, bytes)]
    with tempfile.TemporaryDirectory() as folder:
        for name in drawn:
            (Path(folder) / name).write_bytes(figures[name])
        (Path(folder) / HTML_FILE).write_text(render_html(data, figures), encoding="utf-8")
        tracking_client(tracking_uri).log_artifacts(parent_run_id, folder, REPORT_FOLDER)
    return [f"{REPORT_FOLDER}/{name}" for name in (HTML_FILE, *drawn)]


def report_location(tracking_uri: str | None, parent_run_id: str) -> str | None:
    """Where the run report of `parent_run_id` is: a file path for a local store, else its artifact
    URI; None before the run has one."""
    client = tracking_client(tracking_uri)
    if HTML_FILE not in {Path(a.path).name for a in client.list_artifacts(parent_run_id, REPORT_FOLDER)}:
        return None
    uri = f"{client.get_run(parent_run_id).info.artifact_uri}/{REPORT_FOLDER}/{HTML_FILE}"
    return uri[len("file://"):] if uri.startswith("file://") else uri


# ---- HTML ----------------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1060px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ddd; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .5em 0; } td, th { border: 1px solid #ddd; padding: .25em .6em; }
th { background: #f4f4f4; text-align: left; } td.number { text-align: right; font-variant-numeric: tabular-nums; }
.pass, .FINISHED { color: #2e7d32; font-weight: 600; } .fail, .FAILED, .KILLED { color: #c62828; font-weight: 600; }
.RUNNING { color: #ef6c00; font-weight: 600; } .absent { color: #666; font-style: italic; }
code { background: #f4f4f4; padding: .1em .3em; } img { max-width: 100%; }
"""
_FIGURE_TITLES = {LOSS_LR: "Training loss and learning rate", DATA_FUNNEL: "Data funnel",
                  NEEDLES: "Needle in a haystack (long context)", SCORECARD: "Eval scorecard"}


def render_html(data: RunData, figures: Figures) -> str:
    """One self-contained page: inline CSS, figures as data URIs, no link to anything outside it."""
    sections = [_summary_html(data), _steps_html(data), _registration_html(data.registration),
                *(_figure_html(name, figures.get(name, "Not drawn.")) for name in _FIGURE_TITLES),
                _eval_html(data)]
    title = _text(f"llamaops run {data.run_name}")
    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title}</title>\n"
            f"<style>{_CSS}</style>\n</head>\n<body>\n<h1>{title}</h1>\n" + "\n".join(sections) + "\n</body>\n</html>\n")


def _text(value: Any) -> str:
    return html.escape(str(value))


def _number(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return _text(value)
    if not math.isfinite(number):
        return str(number)
    if number == int(number) and abs(number) >= 1:
        return f"{int(number):,}"
    return f"{number:,.1f}" if abs(number) >= 1000 else f"{number:.4g}"


def _absent(line: str) -> str:
    return f'<p class="absent">{_text(line)}</p>'


def _table(header: list[str] | None, rows: list[list[str]]) -> str:
    """`rows` of ready <td> cells under `header` (None: no header row)."""
    head = "<tr>" + "".join(f"<th>{_text(name)}</th>" for name in header) + "</tr>\n" if header else ""
    body = "".join("<tr>" + "".join(row) + "</tr>\n" for row in rows)
    return f"<table>\n{head}{body}</table>"


def _cell(value: Any, css: str = "") -> str:
    return f'<td class="{css}">{value}</td>' if css else f"<td>{value}</td>"


def _verdict_cell(passed: bool) -> str:
    return _cell("pass" if passed else "FAIL", "pass" if passed else "fail")


def _summary_html(data: RunData) -> str:
    rows = [["pipeline run", data.run_name], ["MLflow parent run", data.parent_run_id],
            ["preset", data.preset or "unknown"], ["started (UTC)", data.started]]
    return "<h2>Run</h2>\n" + _table(None, [[_cell(_text(key)), _cell(_text(value))] for key, value in rows])


def _headline(stage: StageRecord) -> str:
    name = next((name for name in _HEADLINES if name in stage.metrics), None)
    return f"{_text(name)} = {_number(stage.metrics[name])}" if name else "&mdash;"


def _steps_html(data: RunData) -> str:
    if not data.stages:
        return "<h2>Steps</h2>\n" + _absent("No step of this run has started.")
    rows = [[_cell(_text(stage.name)), _cell(_text(stage.status), stage.status), _cell(_headline(stage))]
            for stage in data.stages]
    return "<h2>Steps</h2>\n" + _table(["step", "status", "headline metric"], rows)


def _registration_html(registration: dict[str, Any] | None) -> str:
    if registration is None:
        return "<h2>Registration</h2>\n" + _absent("This run has not registered a model.")
    promoted = "production" in registration.get("aliases", [])
    verdict = (f'<p class="{"pass" if promoted else "fail"}">'
               f'{"Promoted to production" if promoted else "Not promoted"}: '
               f'{_text(registration["model_name"])} version {_text(registration["version"])}</p>')
    failed = registration.get("failed_thresholds") or []
    rows = [["aliases", ", ".join(registration.get("aliases", []))],
            ["gate passed", str(registration.get("gate_passed"))],
            ["failed thresholds", ", ".join(failed) or "none"],
            ["source", registration.get("source_uri", "")]]
    cells = [[_cell(_text(key)), _cell(_text(value))] for key, value in rows]
    if registration.get("serve_command"):
        cells.append([_cell("serve"), _cell(f"<code>{_text(registration['serve_command'])}</code>")])
    return "<h2>Registration</h2>\n" + verdict + _table(None, cells) + _comparison_html(registration)


def _comparison_html(registration: dict[str, Any]) -> str:
    compared = registration.get("compared_with")
    if not compared:
        return _absent("Not compared with a production version.")
    rows = [[_cell(_text(v["metric"])), _cell(_number(v["value"]), "number"),
             _cell(f"{_text(v['comparison'])} {_number(v['threshold'])}"), _verdict_cell(v["passed"])]
            for v in compared.get("verdicts", [])]
    return (f"<p>Compared with production version {_text(compared['version'])}:</p>\n"
            + _table(["metric", "value", "bound", "verdict"], rows))


def _figure_html(name: str, figure: bytes | str) -> str:
    heading = f"<h2>{_text(_FIGURE_TITLES[name])}</h2>\n"
    if isinstance(figure, str):
        return heading + _absent(figure)
    encoded = base64.b64encode(figure).decode("ascii")
    return heading + f'<img src="data:image/png;base64,{encoded}" alt="{_text(_FIGURE_TITLES[name])}">'


def _eval_html(data: RunData) -> str:
    report = _eval_report(data)
    if not report or not report.get("metrics"):
        return "<h2>Eval metrics</h2>\n" + _absent("This run has no eval report.")
    verdicts = {v["metric"]: v for v in (_eval_gate(data) or {}).get("verdicts", [])}
    compared = (data.registration or {}).get("compared_with")
    header = ["metric", "candidate", "threshold", "verdict"]
    if compared:
        header += [f"production v{compared['version']}", "delta"]
    rows = []
    for metric, value in sorted(report["metrics"].items()):
        verdict = verdicts.get(metric)
        bound = f"{_text(verdict['comparison'])} {_number(verdict['threshold'])}" if verdict else ""
        row = [_cell(_text(metric)), _cell(_number(value), "number"), _cell(bound),
               _verdict_cell(verdict["passed"]) if verdict else _cell("")]
        if compared:
            previous = compared.get("metrics", {}).get(metric)
            row += [_cell(_number(previous) if previous is not None else "", "number"),
                    _cell(_delta(value, previous), "number")]
        rows.append(row)
    return "<h2>Eval metrics</h2>\n" + _table(header, rows)


def _delta(value: Any, previous: Any) -> str:
    try:
        difference = float(value) - float(previous)
    except (TypeError, ValueError):
        return ""
    return f"{difference:+.4g}" if math.isfinite(difference) else ""
