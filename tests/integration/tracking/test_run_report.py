"""The run report on a real (sqlite) MLflow store: read from a pipeline run's child runs, logged on
its parent run under report/."""
from pathlib import Path

import pytest

from llamaops.platform.stage import StageResult
from llamaops.platform.tracking import PipelineTracker
from llamaops.platform.tracking.run_report import collect_run_data, log_run_report

FIGURES = ["report/data_funnel.png", "report/loss_lr.png", "report/needles.png", "report/scorecard.png"]


@pytest.fixture
def tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("LLAMAOPS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return f"sqlite:///{tmp_path}/mlflow.db"


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


DATA_REPORT = {"steps": [
    {"step": "read", "in": {"documents": 5, "chars": 50, "tokens": 0}, "out": {"documents": 5, "chars": 50, "tokens": 0},
     "removed": {}},
    {"step": "tokenize", "in": {"documents": 5, "chars": 50, "tokens": 0},
     "out": {"documents": 4, "chars": 40, "tokens": 120}, "removed": {"too_short": {"documents": 1}}},
]}
VERDICTS = [{"metric": "validation_perplexity", "value": 900.0, "comparison": "<=", "threshold": 5000.0, "passed": True},
            {"metric": "violation_rate", "value": 0.4, "comparison": "<=", "threshold": 0.5, "passed": True}]
EVAL_REPORT = {"model_uri": "file:///m", "metrics": {"validation_perplexity": 900.0, "violation_rate": 0.4},
               "gate": {"passed": True, "verdicts": VERDICTS, "failed": []}}
REGISTRATION = {"model_name": "llamaops-tiny", "version": "2", "source_uri": "file:///m", "gate_passed": False,
                "aliases": ["candidate"], "failed_thresholds": ["violation_rate.worsening"], "serve_command": None,
                "compared_with": {"version": "1", "metrics": {"violation_rate": 0.2}, "verdicts": [
                    {"metric": "violation_rate.worsening", "value": 0.2, "comparison": "<=", "threshold": 0.1,
                     "passed": False}]}}


def _trained(tracker: PipelineTracker, name: str, losses: list[float], report: dict | None = None) -> None:
    with tracker.stage(name) as run:
        for step, loss in enumerate(losses, start=1):
            run.log_metrics({"loss": loss, "lr": 1e-3 / step, "grad_norm": 1.0}, step=step)
        run.log_result(StageResult(outputs={}, metrics={"final_loss": losses[-1]}, report=report or {"steps": 2}))


def _pipeline_run(uri: str) -> PipelineTracker:
    tracker = PipelineTracker(uri, "llamaops", "run-a", "tiny")
    with tracker.stage("data") as run:
        run.log_result(StageResult(outputs={}, metrics={"tokens_out": 120.0}, report=DATA_REPORT))
    _trained(tracker, "pretrain", [9.0, 8.0, 7.0])
    gate = {"needle_depths": [0.0, 1.0], "stages": [{"seq_len": 512, "needle_accuracy": 0.5}]}
    _trained(tracker, "long_context", [7.5, 7.0], {"steps": 2, "gate": gate})
    _trained(tracker, "round1-sft", [3.0, 2.0])
    with tracker.stage("eval") as run:
        run.log_result(StageResult(outputs={}, metrics=EVAL_REPORT["metrics"], report=EVAL_REPORT))
    with tracker.stage("register") as run:
        run.log_report("registration", REGISTRATION)
        run.log_metrics({"model_version": 2.0})
    return tracker


def test_report_is_logged_on_the_parent_run_and_a_rerun_overwrites_it(tracking: str, tmp_path: Path) -> None:
    tracker = _pipeline_run(tracking)
    logged = log_run_report(tracking, tracker.run_id, REGISTRATION)
    assert sorted(logged) == sorted(["report/run_report.html", *FIGURES])

    client = _client(tracking)
    assert sorted(a.path for a in client.list_artifacts(tracker.run_id, "report")) == sorted(logged)
    page = Path(client.download_artifacts(tracker.run_id, "report/run_report.html", str(tmp_path))).read_text()
    for stage in ("data", "pretrain", "long_context", "round1-sft", "eval", "register"):
        assert f"<td>{stage}</td>" in page
    assert "Not promoted: llamaops-tiny version 2" in page
    assert "violation_rate.worsening" in page and "Compared with production version 1" in page
    assert "<th>production v1</th>" in page and '<td class="number">+0.2</td>' in page  # VR 0.4 vs 0.2
    assert "final_loss = 7" in page  # pretrain's headline

    assert log_run_report(tracking, tracker.run_id, REGISTRATION) == logged  # a resumed run
    assert sorted(a.path for a in client.list_artifacts(tracker.run_id, "report")) == sorted(logged)


def test_collected_data_follows_the_lifecycle_with_one_point_per_step(tracking: str) -> None:
    tracker = _pipeline_run(tracking)
    with tracker.stage("pretrain") as run:  # logged live, then again when the stage published
        run.log_metrics({"loss": 6.5}, step=3)
    data = collect_run_data(tracking, tracker.run_id)
    assert [stage.name for stage in data.stages] == ["data", "pretrain", "long_context", "round1-sft", "eval", "register"]
    assert data.stage("pretrain").loss == [(1, 9.0), (2, 8.0), (3, 6.5)]
    assert data.stage("pretrain").lr == [(1, 1e-3), (2, 5e-4), (3, pytest.approx(1e-3 / 3))]
    assert data.preset == "tiny" and data.run_name == "run-a"
    assert data.registration == REGISTRATION  # the register step's own record when none is passed in


def test_a_run_without_later_stages_still_gets_its_report(tracking: str, tmp_path: Path) -> None:
    tracker = PipelineTracker(tracking, "llamaops", "run-b", "tiny")
    with tracker.stage("data") as run:
        run.log_result(StageResult(outputs={}, metrics={"tokens_out": 120.0}, report=DATA_REPORT))
    assert log_run_report(tracking, tracker.run_id, None) == ["report/run_report.html", "report/data_funnel.png"]
    page = Path(_client(tracking).download_artifacts(tracker.run_id, "report/run_report.html", str(tmp_path))).read_text()
    assert "This run has not registered a model." in page and "This run has no eval report." in page
