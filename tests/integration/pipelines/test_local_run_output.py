"""What `pipeline submit --local` shows while KFP's local runner works: the runner's own output (each
step's inputs, streamed output and warnings) goes to the run's steps.log, the terminal gets the
step events and one error line that names the log. The lifecycle is replaced here by a two-step
pipeline (a chatty step, then a failing one) so the real local runner is watched in seconds."""
import os

from kfp import dsl
from typer.testing import CliRunner

from llamaops.cli.main import app
from llamaops.pipelines import local as local_runs
from llamaops.pipelines.runs import load_run


@dsl.component(base_image="python:3.11")
def chatty(text: str) -> str:
    print("CHATTY " + text)
    return text


@dsl.component(base_image="python:3.11")
def failing(text: str):
    raise RuntimeError("BROKEN on purpose after " + text)


def two_steps(preset, local: bool = False):
    @dsl.pipeline(name="two-steps")
    def pipeline(preset_json: str, run_id: str, artifact_root: str, tracking_uri: str, parent_run_id: str,
                 model_name: str):
        failing(text=chatty(text=run_id).output)

    return pipeline


def test_the_runners_output_goes_to_the_runs_log_and_the_error_names_it(tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMAOPS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(local_runs, "build_pipeline", two_steps)
    result = CliRunner().invoke(app, ["pipeline", "submit", "tiny", "--local"])
    assert result.exit_code != 0
    (record,) = (tmp_path / "home" / "runs").glob("*.json")
    run = load_run(record.stem)
    log = local_runs.log_path(run.run_id)
    text = log.read_text()
    assert f"run {run.run_id}" in text and "Executing task" in text
    assert f"CHATTY {run.run_id}" in text and "BROKEN on purpose after" in text
    terminal = result.stdout + result.stderr
    assert "CHATTY" not in terminal and "Executing task" not in terminal and "preset_json" not in terminal
    error = result.stderr.strip().splitlines()[-1]  # after MLflow's notes on creating its database
    assert error.startswith(f"error: run {run.run_id} failed") and str(log) in error
    assert run.status == "failed"


def test_a_ray_that_cannot_start_fails_the_run_in_one_line_and_records_it(tmp_path, monkeypatch):
    from llamaops.platform.train import ray_runner

    monkeypatch.setenv("LLAMAOPS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(local_runs, "build_pipeline", two_steps)
    (tmp_path / "a-file").write_text("")
    monkeypatch.setattr(ray_runner, "LOCAL_RAY_TEMP_DIR", str(tmp_path / "a-file" / "ray"))  # cannot be made
    result = CliRunner().invoke(app, ["pipeline", "submit", "tiny", "--local"])
    assert result.exit_code != 0
    (record,) = (tmp_path / "home" / "runs").glob("*.json")
    run = load_run(record.stem)
    assert run.status == "failed" and run.stages_done == [] and run.ended_at is not None
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith(f"error: run {run.run_id} failed") and "Traceback" not in result.stderr
    assert "RAY_ADDRESS" not in os.environ
