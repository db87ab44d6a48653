"""`llamaops pipeline submit --host / status / logs` through the real kfp.Client against a FAKE
Kubeflow Pipelines HTTP API on 127.0.0.1 (conftest's `fake_kfp`: the KFP backend cannot run here)."""
import pytest
from fake_kfp_api import TOKEN
from typer.testing import CliRunner

from llamaops.cli.main import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMAOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.config/kfp/context.json from the user
    monkeypatch.delenv("KFP_TOKEN", raising=False)


def test_submit_creates_experiment_and_run_then_status_and_logs_follow_it(fake_kfp, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    result = runner.invoke(app, ["pipeline", "submit", "tiny", "--host", fake_kfp.url, "--token-file", str(token_file),
                                 "--namespace", "team-a", "--experiment", "llama-exp"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "run run-1 submitted to experiment llama-exp"
    assert lines[1] == f"{fake_kfp.url}/#/runs/details/run-1"
    (experiment,) = fake_kfp.experiments.values()
    assert experiment["display_name"] == "llama-exp" and experiment["namespace"] == "team-a"
    run = fake_kfp.runs["run-1"]
    assert run["experiment_id"] == experiment["experiment_id"]
    assert run["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "llamaops-lifecycle-tiny"
    assert "kubernetes" in run["pipeline_spec"]["platform_spec"]["platforms"]  # step pods configured the KFP way
    assert run["runtime_config"]["parameters"]["run_id"].startswith("tiny-")

    status = runner.invoke(app, ["pipeline", "status", "run-1", "--host", fake_kfp.url, "--token", TOKEN])
    assert status.exit_code == 0, status.output
    assert status.stdout.strip() == "run run-1 RUNNING"
    logs = runner.invoke(app, ["pipeline", "logs", "run-1", "--host", fake_kfp.url, "--token", TOKEN])
    assert logs.exit_code == 0, logs.output
    assert logs.stdout.strip().splitlines() == [
        "data  SUCCEEDED  pod data-pod-1", "pretrain  FAILED  error: RayJob ml/x-pretrain ended FAILED: OOM"]
    missing = runner.invoke(app, ["pipeline", "status", "run-9", "--host", fake_kfp.url, "--token", TOKEN])
    assert missing.exit_code == 2 and "no run run-9" in missing.stderr


def test_rejected_token_fails_in_one_line_before_compiling(fake_kfp, monkeypatch):
    import llamaops.pipelines.lifecycle as lifecycle

    monkeypatch.setattr(lifecycle, "compile_pipeline", lambda *a: pytest.fail("compiled before the token was checked"))
    result = runner.invoke(app, ["pipeline", "submit", "tiny", "--host", fake_kfp.url, "--token", "wrong"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"error: KFP at {fake_kfp.url} rejected the token (HTTP 401); pass a valid --token or --token-file"]
    assert [(method, path) for method, path, _ in fake_kfp.requests] == [("GET", "/apis/v2beta1/healthz")]
    assert not fake_kfp.runs
