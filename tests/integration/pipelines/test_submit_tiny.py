"""The README's first command, `llamaops pipeline submit tiny --local` with no settings, SIGKILLed during
pretraining, then `--resume`d: the whole default lifecycle on this machine in one test. Exact resume
makes it the default run, which learns, passes tiny's own gate, is promoted to `production`, and the
serve command it prints answers a chat completion."""
import json
import math
import os
import signal
import subprocess
import sys
import time
from importlib.util import find_spec
from pathlib import Path

import pytest

from ..serve.servers import post, start_server

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


PRETRAIN_STEPS = 36  # tiny's, with a checkpoint every 10th: the kill lands mid-stage


def _killed_after_first_pretraining_checkpoint(home: Path, settings: list[str]) -> str:
    """Start `submit tiny --local`, SIGKILL its whole process group once pretraining has checkpointed."""
    process = subprocess.Popen([str(LLAMAOPS), "pipeline", "submit", "tiny", "--local", *settings], env=_env(home),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 900
    try:
        while not list((home / "artifacts").glob("*/pretrain-checkpoints/step_*/_COMPLETE")):
            assert process.poll() is None, "the run ended before pretraining checkpointed"
            assert time.monotonic() < deadline, "no pretraining checkpoint within 15 minutes"
            time.sleep(2)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    time.sleep(3)  # Ray's own processes notice their raylet is gone
    (record,) = _records(home)
    return record["run_id"]


def test_the_default_run_killed_and_resumed_is_promoted_and_serves(tmp_path, monkeypatch):
    home = tmp_path / "home"
    settings: list[str] = []  # the preset as the README runs it
    run_id = _killed_after_first_pretraining_checkpoint(home, settings)
    interrupted = subprocess.run([str(LLAMAOPS), "pipeline", "runs"], env=_env(home), capture_output=True, text=True)
    assert f"{run_id}  interrupted" in interrupted.stdout

    result = subprocess.run([str(LLAMAOPS), "pipeline", "submit", "tiny", "--local", "--resume", run_id,
                             *settings],
                            env=_env(home), capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "data skipped" in result.stdout
    # The terminal shows the steps' events; KFP's own output (inputs, streamed logs) is in the run's log.
    assert "KFP Executor" not in result.stdout + result.stderr and "preset_json" not in result.stdout + result.stderr
    assert len(result.stdout.splitlines()) <= 50, result.stdout  # the README's bound
    log = (home / "runs" / run_id / "steps.log").read_text()
    headers = [line for line in log.splitlines() if line.startswith("==== ") and line.endswith(f"run {run_id}")]
    assert len(headers) == 2 and "KFP Executor" in log  # both attempts
    # Each step's own output (and its Ray workers') is in its log; the training steps join the one
    # Ray each attempt starts rather than each starting its own.
    steps = home / "runs" / run_id / "steps"
    pretrain_log = (steps / "pretrain.log").read_text()
    assert "Connecting to existing Ray cluster" in pretrain_log and "Started a local Ray instance" not in pretrain_log
    assert "Connecting to existing Ray cluster" not in log
    # Pretraining's rank 0 reported its progress while it trained, to the last step.
    events = [json.loads(line) for line in (home / "runs" / run_id / "events.jsonl").read_text().splitlines()]
    progress = [e["detail"] for e in events if e["step"] == "pretrain" and e["status"] == "progress"]
    assert progress and progress[-1]["done"] == progress[-1]["total"] == PRETRAIN_STEPS and progress[-1]["loss"] > 0, progress
    status = json.loads(subprocess.run([str(LLAMAOPS), "pipeline", "status", run_id, "--json"], env=_env(home),
                                       capture_output=True, text=True, check=True).stdout)
    assert status["status"] == "succeeded" and status["model_version"] == "1"
    assert [step["step"] for step in status["steps"]][:2] == ["data", "pretrain"]
    assert "model llamaops-tiny version 1 aliases candidate" in result.stdout
    (record,) = _records(home)
    assert record["run_id"] == run_id and record["status"] == "succeeded"
    assert record["stages_done"] == ["data", "pretrain", "long_context", "anneal", "sft", "dpo", "safety", "eval",
                                     "register", "deploy"]

    from mlflow.tracking import MlflowClient

    tracking = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(tracking, registry_uri=tracking)
    assert client.get_run(record["mlflow_run_id"]).info.status == "FINISHED"
    children = _child_runs(client, record["mlflow_run_id"])  # one per step, across both attempts
    assert sorted(children) == sorted(record["stages_done"])
    assert all(run.info.status == "FINISHED" for run in children.values())
    pretrain = children["pretrain"].info.run_id
    report = json.loads(Path(client.download_artifacts(pretrain, "report.json", str(tmp_path))).read_text())
    assert report["resumed_from_step"] > 0
    # Each training stage's checkpoints go once its model is published: nothing to resume from.
    assert report["checkpoints_kept"] == [] and not list((home / "artifacts").glob("*/*-checkpoints/step_*"))
    losses = [m.value for m in sorted(client.get_metric_history(pretrain, "loss"), key=lambda m: m.step)]
    assert len(losses) == PRETRAIN_STEPS  # sent live by rank 0 in both attempts, and by the publish: each step once
    assert losses[0] > math.log(128_256) - 1.0  # starts near uniform over the 128K vocabulary
    assert losses[-1] < losses[0] - 3.0  # here: 12.3 -> 7.4
    throughput = children["pretrain"].data.metrics
    assert throughput["tokens_per_second"] > 0 and 0 < throughput["mfu"] < 1
    long_context = children["long_context"].info.run_id
    lc_losses = [m.value for m in sorted(client.get_metric_history(long_context, "loss"), key=lambda m: m.step)]
    assert lc_losses[0] < losses[0] - 2.0  # it continues from the pretrained model
    assert "gate_passed" in children["eval"].data.metrics
    gate = children["long_context"].data.metrics  # each stage passed tiny's short-context gate
    for seq_len in (512, 1024):
        assert gate[f"long_context.gate.{seq_len}.passed"] == gate[f"long_context.gate.{seq_len}.recovered"] == 1.0
        assert 0 <= gate[f"long_context.gate.{seq_len}.needle_accuracy"] <= 1  # reported, not required, for tiny
    assert "long_context.gate.baseline_short_loss" in gate
    from llamaops.platform.config import load_preset
    from llamaops.platform.model.checkpoint import load_model

    assert load_model(home / "artifacts" / run_id / "anneal").cfg == load_preset("tiny").model
    assert "report.json" in [f.path for f in client.list_artifacts(children["eval"].info.run_id)]
    assert children["pretrain"].data.tags["llamaops.input.data"] == (home / "artifacts" / run_id / "data").as_uri()
    # The parent run: the commit it ran, the run's headline figures and its report, printed at the end.
    parent = client.get_run(record["mlflow_run_id"])
    assert parent.data.tags["mlflow.source.git.commit"]
    assert parent.data.metrics["promoted"] == 1.0 and parent.data.metrics["model_version"] == 1.0
    assert parent.data.metrics["validation_perplexity"] == children["eval"].data.metrics["validation_perplexity"]
    figures = {Path(f.path).name for f in client.list_artifacts(record["mlflow_run_id"], "report")}
    assert {"run_report.html", "loss_lr.png", "data_funnel.png", "scorecard.png"} <= figures
    (printed,) = [line for line in result.stdout.splitlines() if line.startswith("run report: ")]
    page = Path(printed.removeprefix("run report: ")).read_text()
    assert "Promoted to production" in page and "long_context" in page
    version = client.get_model_version_by_alias("llamaops-tiny", "candidate")
    assert version.source == (home / "artifacts" / run_id / "safety").as_uri()
    assert version.run_id == record["mlflow_run_id"]

    # The serve command the run printed answers a chat completion with the promoted model.
    (deploy,) = [line for line in result.stdout.splitlines() if line.startswith("deploy: llamaops serve ")]
    model = deploy.split()[3]
    assert model == "models:/llamaops-tiny@production"
    for name, value in _env(home).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    server, base = start_server(model, tmp_path)
    try:
        status, reply = post(base, "/v1/chat/completions", {
            "model": "tiny", "max_tokens": 8, "messages": [{"role": "user", "content": "Hello!"}]})
    finally:
        server.terminate()
        server.wait(timeout=60)
    assert status == 200, reply
    assert reply["choices"][0]["message"]["role"] == "assistant" and reply["usage"]["completion_tokens"] > 0
