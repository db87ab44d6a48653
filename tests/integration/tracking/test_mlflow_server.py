"""Tracking and registry against a real `mlflow server`, with model artifacts on real S3."""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from llamaops.platform.store import staged_output
from llamaops.platform.tracking import PipelineTracker, TrackingError, model_uri_for, register_model, set_alias

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLAMAOPS_HOME", str(tmp_path / "home"))


def test_stage_in_another_process_logs_into_the_pipeline_run(mlflow_server, tmp_path: Path) -> None:
    tracker = PipelineTracker(mlflow_server.uri, "llamaops-integration", "run-1", "tiny")
    with tracker.stage("data_prep", {"tokens": 1000}) as sink:
        sink.log_metrics({"documents": 12.0})
    stage_process = textwrap.dedent(f"""
        from llamaops.platform.tracking import PipelineTracker
        tracker = PipelineTracker.attach({mlflow_server.uri!r}, {tracker.run_id!r})
        with tracker.stage("pretrain", {{"lr": 0.003}}) as sink:
            for step in range(3):
                sink.log_metrics({{"loss": 4.0 - step}}, step=step)
            sink.log_report("report", {{"steps": 3}})
    """)
    done = subprocess.run([sys.executable, "-c", stage_process], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    tracker.log_report("summary", {"stages": 2})
    tracker.finish()

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server.uri)
    children = client.search_runs([tracker.experiment_id], f"tags.`mlflow.parentRunId` = '{tracker.run_id}'")
    assert sorted(run.info.run_name for run in children) == ["data_prep", "pretrain"]
    pretrain = next(run for run in children if run.info.run_name == "pretrain")
    assert [m.value for m in client.get_metric_history(pretrain.info.run_id, "loss")] == [4.0, 3.0, 2.0]
    assert pretrain.info.status == "FINISHED"
    report = client.download_artifacts(pretrain.info.run_id, "report.json", str(tmp_path))
    assert Path(report).read_text().strip().startswith("{")
    assert client.get_run(tracker.run_id).info.status == "FINISHED"


def test_registry_aliases_point_at_s3_artifacts(mlflow_server, s3_bucket: str) -> None:
    uris = [f"{s3_bucket}/models/{name}" for name in ("a", "b")]
    for uri in uris:
        with staged_output(uri) as out:
            (out / "model.safetensors").write_bytes(b"weights")
    first = register_model("llama-int", uris[0], tracking_uri=mlflow_server.uri)
    second = register_model("llama-int", uris[1], tracking_uri=mlflow_server.uri)
    assert model_uri_for("models:/llama-int@candidate", mlflow_server.uri) == uris[1]
    set_alias("llama-int", first, "production", mlflow_server.uri)
    assert model_uri_for("models:/llama-int@production", mlflow_server.uri) == uris[0]
    set_alias("llama-int", second, "production", mlflow_server.uri)  # promote the candidate
    assert model_uri_for("models:/llama-int@production", mlflow_server.uri) == uris[1]
    with pytest.raises(TrackingError, match="cannot register the local artifact"):
        register_model("llama-int", "file:///tmp/model", tracking_uri=mlflow_server.uri)


def test_stopped_server_is_one_line() -> None:
    with pytest.raises(TrackingError, match="does not answer"):
        PipelineTracker("http://127.0.0.1:9", "x", "y", "tiny")
