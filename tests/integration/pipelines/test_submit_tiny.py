"""`llamaops pipeline submit tiny --local`: the whole lifecycle on this machine, then a kill and --resume."""
import json
import os
import signal
import subprocess
import sys
import time
from importlib.util import find_spec
from pathlib import Path

import pytest

LLAMAOPS = Path(sys.executable).parent / "llamaops"
STAGE_MODULES = ["llamaops.platform.data.prep", "llamaops.platform.train.pretrain", "llamaops.platform.align.sft",
                 "llamaops.platform.align.dpo", "llamaops.platform.align.safety", "llamaops.platform.eval.evaluate"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(any(find_spec(name) is None for name in STAGE_MODULES), reason="a stage module is missing"),
]


def _env(home: Path) -> dict[str, str]:
    env = {**os.environ, "LLAMAOPS_HOME": str(home), "MLFLOW_DISABLE_TELEMETRY": "true", "RAY_AUTH_MODE": "disabled"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _records(home: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in (home / "runs").glob("*.json")]


def _child_runs(client, parent_run_id: str) -> dict:
    parent = client.get_run(parent_run_id)
    runs = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_run_id}'")
    return {run.data.tags["llamaops.stage"]: run for run in runs}


def test_submit_tiny_runs_every_stage_and_registers_the_model(tmp_path):
    home = tmp_path / "home"
    result = subprocess.run([str(LLAMAOPS), "pipeline", "submit", "tiny", "--local"], env=_env(home),
                            capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "model llamaops-tiny version 1 aliases candidate" in result.stdout
    (record,) = _records(home)
    assert record["status"] == "succeeded"
    assert record["stages_done"] == ["data", "pretrain", "long_context", "anneal", "sft", "dpo", "safety", "eval",
                                     "register"]

    from mlflow.tracking import MlflowClient

    tracking = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(tracking, registry_uri=tracking)
    assert client.get_run(record["mlflow_run_id"]).info.status == "FINISHED"
    children = _child_runs(client, record["mlflow_run_id"])
    assert all(run.info.status == "FINISHED" for run in children.values())
    losses = [m.value for m in sorted(client.get_metric_history(children["pretrain"].info.run_id, "loss"),
                                      key=lambda m: m.step)]
    assert len(losses) > 5 and losses[-1] < losses[0] * 0.8
    assert "gate_passed" in children["eval"].data.metrics
    assert "report.json" in [f.path for f in client.list_artifacts(children["eval"].info.run_id)]
    version = client.get_model_version_by_alias("llamaops-tiny", "candidate")
    assert version.source == (home / "artifacts" / record["run_id"] / "safety").as_uri()
    assert version.run_id == record["mlflow_run_id"]
