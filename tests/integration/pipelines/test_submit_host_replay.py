"""The proof of the `--host` path: the exact create-run request `llamaops pipeline submit tiny --host`
sends (recorded by the FAKE KFP API of conftest's `fake_kfp`, the stand-in for the KFP backend) is
replayed through KFP's own local runner, as a backend would run it: the recorded pipeline spec with
the recorded runtime parameters, in a process whose environment is PATH and nothing else. Every step
of the tiny lifecycle must succeed, from nothing but what the request carries. Its training steps
run one rank each (conftest's SINGLE_RANK): more would launch RayJobs, rehearsed in tests/pods."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from fake_kfp_api import TOKEN, created_run
from typer.testing import CliRunner

from llamaops.cli.main import app

pytestmark = pytest.mark.slow

# One rank per training step: on a cluster, a step whose ranks span pods launches a RayJob, which a
# replay through KFP's local runner cannot run (no KubeRay here).
SINGLE_RANK = {"pretrain.layout.dp": "1", "long_context.layout.dp": "1", "post_training.sft.layout.dp": "1",
               "post_training.dpo.layout.dp": "1"}

REPLAY = """
import json, sys
from kfp import components, local
local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=sys.argv[2])
pipeline = components.load_component_from_file(sys.argv[1])
task = pipeline(**json.loads(sys.argv[3]))
print("REPLAYED " + json.dumps(task.output))
"""


def _submitted_request(fake_kfp, tmp_path: Path, monkeypatch, settings: list[str]) -> dict:
    monkeypatch.setenv("HOME", str(tmp_path / "submitter"))  # no kfp context or kubeconfig of the user
    monkeypatch.setenv("LLAMAOPS_HOME", str(tmp_path / "submitter" / ".llamaops"))
    for name in ("KUBECONFIG", "MLFLOW_TRACKING_URI", "KFP_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    token = tmp_path / "token"
    token.write_text(TOKEN)
    argv = ["pipeline", "submit", "tiny", "--host", fake_kfp.url, "--token-file", str(token),
            "--artifact-root", (tmp_path / "artifacts").as_uri(), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    result = CliRunner().invoke(app, argv + settings)
    assert result.exit_code == 0, result.output
    return created_run(fake_kfp)


def test_the_request_submit_host_sends_runs_the_whole_lifecycle(fake_kfp, smallest_tiny, tmp_path, monkeypatch):
    request = _submitted_request(fake_kfp, tmp_path, monkeypatch, smallest_tiny(SINGLE_RANK))
    assert request["service_account"] == "llamaops-pipeline"
    spec, platform = request["pipeline_spec"]["pipeline_spec"], request["pipeline_spec"]["platform_spec"]
    parameters = request["runtime_config"]["parameters"]
    assert parameters.get("parent_run_id", "") == ""  # the run makes its own MLflow parent run
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert all(config["secretAsEnv"][0]["secretName"] == "llamaops-s3" for config in executors.values())

    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump_all([spec, platform], sort_keys=False))
    replay = subprocess.run(
        [sys.executable, "-c", REPLAY, str(tmp_path / "pipeline.yaml"), str(tmp_path / "kfp"), json.dumps(parameters)],
        env={"PATH": os.environ["PATH"]}, cwd=tmp_path, capture_output=True, text=True, timeout=1800,
    )
    tail = replay.stdout[-4000:] + replay.stderr[-4000:]
    assert replay.returncode == 0, tail
    version = json.loads(replay.stdout.split("REPLAYED ")[-1])
    assert version == "1", tail

    from mlflow.tracking import MlflowClient

    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking, registry_uri=tracking)
    run_id = parameters["run_id"]
    experiments = [experiment.experiment_id for experiment in client.search_experiments()]
    (parent,) = client.search_runs(experiments, f"tags.`llamaops.run` = '{run_id}'")
    assert parent.info.status == "FINISHED"
    stages = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert {run.data.tags["llamaops.stage"]: run.info.status for run in stages} == {
        name: "FINISHED" for name in
        ("data", "pretrain", "long_context", "anneal", "sft", "dpo", "safety", "eval", "register", "deploy")}
    production = client.get_model_version_by_alias("llamaops-tiny", "production")
    assert str(production.version) == "1" and production.source == (tmp_path / "artifacts" / run_id / "safety").as_uri()
    assert (tmp_path / "artifacts" / run_id / "eval" / "_COMPLETE").is_file()
