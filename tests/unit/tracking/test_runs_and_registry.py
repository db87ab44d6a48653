"""Parent/child runs and the model registry on a real sqlite MLflow store (one DB per module)."""
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from llamaops.platform.stage import StageResult
from llamaops.platform.store import ArtifactError, staged_output
from llamaops.platform.tracking import PipelineTracker, TrackingError, model_uri_for, register_model, set_alias
from llamaops.platform.tracking.runs import source_commit


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LLAMAOPS_HOME", str(home))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        yield f"sqlite:///{home}/mlflow.db"


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def test_pipeline_with_stages_attach_and_resume(tracking_uri: str, tmp_path: Path) -> None:
    tracker = PipelineTracker(tracking_uri, "llamaops-unit", "run-a", "tiny")
    with tracker.stage("pretrain", {"lr": 0.003, "schedule": {"warmup": 10}}, inputs={"data": "file:///d"}) as sink:
        sink.log_metrics({"loss": 4.0}, step=1)
        sink.log_metrics({"loss": 3.5}, step=2)
        sink.log_result(StageResult(outputs={"model": "file:///m"}, metrics={"final_loss": 3.5}, report={"n": 2}))
    with pytest.raises(RuntimeError):
        with tracker.stage("sft", {}) as sink:
            raise RuntimeError("stage crashed")

    # A stage process attaches by id; re-running a stage continues its child run.
    attached = PipelineTracker.attach(tracking_uri, tracker.run_id)
    with attached.stage("sft", {"epochs": 1}) as sink:
        sink.log_metrics({"loss": 2.0}, step=1)
    tracker.finish()

    client = _client(tracking_uri)
    children = client.search_runs([tracker.experiment_id], f"tags.`mlflow.parentRunId` = '{tracker.run_id}'")
    by_name = {run.info.run_name: run for run in children}
    assert sorted(by_name) == ["pretrain", "sft"]
    pretrain, sft = by_name["pretrain"], by_name["sft"]
    assert pretrain.data.params == {"lr": "0.003", "schedule.warmup": "10"}
    assert [(m.step, m.value) for m in client.get_metric_history(pretrain.info.run_id, "loss")] == [(1, 4.0), (2, 3.5)]
    assert pretrain.data.metrics["final_loss"] == 3.5
    assert pretrain.data.tags["llamaops.output.model"] == "file:///m"
    assert pretrain.data.tags["llamaops.input.data"] == "file:///d"  # lineage: what the stage read
    report = Path(client.download_artifacts(pretrain.info.run_id, "report.json", str(tmp_path)))
    assert json.loads(report.read_text()) == {"n": 2}
    assert (pretrain.info.status, sft.info.status) == ("FINISHED", "FINISHED")
    assert client.get_run(tracker.run_id).info.status == "FINISHED"
    # artifacts sit next to the database, not in ./mlruns of the working directory
    assert pretrain.info.artifact_uri.startswith(Path(tracking_uri[len("sqlite:///"):]).parent.as_uri())

    resumed = PipelineTracker(tracking_uri, "llamaops-unit", "run-a", "tiny", resume_run_id=tracker.run_id)
    assert resumed.run_id == tracker.run_id
    with pytest.raises(ValueError):
        with resumed:
            raise ValueError("pipeline failed")
    assert client.get_run(tracker.run_id).info.status == "FAILED"


def test_attach_to_unknown_run_is_one_line(tracking_uri: str) -> None:
    with pytest.raises(TrackingError, match="^no MLflow run 'deadbeef' at sqlite:///.*check the parent run id$"):
        PipelineTracker.attach(tracking_uri, "deadbeef")


def test_register_alias_and_resolve(tracking_uri: str, tmp_path: Path) -> None:
    uris = []
    for name in ("v1", "v2"):
        uri = (tmp_path / name).as_uri()
        with staged_output(uri) as out:
            (out / "model.safetensors").write_bytes(b"weights")
        uris.append(uri)
    first = register_model("tiny-llama", uris[0], tracking_uri=tracking_uri)
    second = register_model("tiny-llama", uris[1], tracking_uri=tracking_uri)
    assert (first, second) == ("1", "2")
    assert model_uri_for("models:/tiny-llama@candidate", tracking_uri) == uris[1]
    set_alias("tiny-llama", first, "production", tracking_uri)
    assert model_uri_for("models:/tiny-llama@production", tracking_uri) == uris[0]
    assert model_uri_for("models:/tiny-llama/2", tracking_uri) == uris[1]
    assert model_uri_for("tiny-llama", tracking_uri) == uris[1]
    assert model_uri_for(uris[0], tracking_uri) == uris[0]
    with pytest.raises(TrackingError, match="^registered model 'tiny-llama' has no alias 'staging'$"):
        model_uri_for("models:/tiny-llama@staging", tracking_uri)
    with pytest.raises(TrackingError, match="has no version 9"):
        set_alias("tiny-llama", 9, "production", tracking_uri)
    with pytest.raises(ArtifactError, match="does not exist or is unfinished"):
        register_model("tiny-llama", (tmp_path / "missing").as_uri(), tracking_uri=tracking_uri)


def test_a_pipeline_run_records_the_commit_it_ran(tracking_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    checkout = Path(__file__).resolve().parents[3]
    head = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    monkeypatch.delenv("LLAMAOPS_GIT_COMMIT", raising=False)
    from_checkout = PipelineTracker(tracking_uri, "llamaops-unit", "run-commit", "tiny")
    monkeypatch.setenv("LLAMAOPS_GIT_COMMIT", "0123abc")  # an image's build-time value
    from_image = PipelineTracker(tracking_uri, "llamaops-unit", "run-image", "tiny")
    tags = [_client(tracking_uri).get_run(t.run_id).data.tags for t in (from_checkout, from_image)]
    assert [t["mlflow.source.git.commit"] for t in tags] == [head.stdout.strip(), "0123abc"]


def test_an_installed_package_inside_another_repository_records_no_commit(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("LLAMAOPS_GIT_COMMIT", raising=False)
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=u", "-c", "user.email=u@example.com",
                    "commit", "-q", "--allow-empty", "-m", "someone else's"], check=True)
    installed = tmp_path / ".venv" / "lib" / "site-packages" / "llamaops"
    installed.mkdir(parents=True)
    assert source_commit(installed) is None  # not the enclosing repository's HEAD
