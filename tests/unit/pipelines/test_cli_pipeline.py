import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from llamaops.cli.main import app
from llamaops.pipelines.runs import RunRecord, save_run

runner = CliRunner()


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMAOPS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    return lines[0]


def test_list_names_every_preset_with_its_steps_in_order():
    result = runner.invoke(app, ["pipeline", "list"])
    assert result.exit_code == 0
    rows = result.stdout.strip().splitlines()
    assert [row.split()[0] for row in rows] == ["tiny", "8b", "70b", "405b", "full-405b"]
    assert "data -> pretrain -> long_context -> anneal -> sft -> dpo -> safety -> eval -> register" in rows[0]


def test_submit_needs_a_target():
    assert "--local, --host URL" in _error(runner.invoke(app, ["pipeline", "submit", "tiny"]))


def test_submit_to_an_unreachable_host_fails_in_one_line_before_compiling(monkeypatch):
    import socket

    import llamaops.pipelines.lifecycle as lifecycle

    monkeypatch.setattr(lifecycle, "compile_pipeline", lambda *a: pytest.fail("compiled before probing"))
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    message = _error(runner.invoke(app, ["pipeline", "submit", "tiny", "--host", f"http://127.0.0.1:{port}"]))
    assert f"cannot reach KFP at http://127.0.0.1:{port}" in message
    assert "must be an http(s):// URL" in _error(runner.invoke(app, ["pipeline", "submit", "tiny", "--host", "kfp:80"]))


def test_dry_run_prints_the_pipeline_spec_the_data_rayjob_and_one_rayjob_per_training_step():
    result = runner.invoke(app, ["pipeline", "submit", "8b", "--dry-run", "--namespace", "ml"])
    assert result.exit_code == 0, result.output
    docs = list(yaml.safe_load_all(result.stdout))
    assert docs[0]["pipelineInfo"]["name"] == "llamaops-lifecycle-8b"
    jobs = [doc for doc in docs if doc.get("kind") == "RayJob"]
    rounds = [f"round{n}-{stage}" for n in range(1, 7) for stage in ("reward_model", "rejection_sampling", "sft", "dpo")]
    assert [job["metadata"]["labels"]["llamaops.io/step"] for job in jobs] == [
        "data", "pretrain", "long_context", "anneal", *rounds, "safety"]
    assert len({job["metadata"]["name"] for job in jobs}) == len(jobs)
    assert jobs[0]["spec"]["entrypoint"].startswith("llamaops data prep s3://")
    worker = jobs[1]["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]
    assert jobs[1]["metadata"]["namespace"] == "ml"
    assert worker["volumes"] == [{"name": "tmp", "emptyDir": {}}, {"name": "dshm", "emptyDir": {"medium": "Memory"}}]
    assert [m["mountPath"] for m in worker["containers"][0]["volumeMounts"]] == ["/tmp", "/dev/shm"]
    assert worker["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "8"



def test_a_cpu_preset_trains_one_rank_per_pod_on_rayjobs_sized_by_the_contract(tmp_path: Path):
    """tiny's two ranks are two CPU pods of the contract's cpuPod size, each offering Ray one rank's
    CPUs; the head drives only. Its one data worker prepares data in the step's own pod."""
    contract = tmp_path / "cluster.json"
    contract.write_text(json.dumps({"cpuPod": {"cpus": 0.5, "memoryGiB": 1.5}, "cpuPool": "cpu",
                                    "nodePools": {"cpu": {"nodeSelector": {"pool": "cpu"}}}}))
    tiny = runner.invoke(app, ["pipeline", "submit", "tiny", "--dry-run", "--cluster", str(contract)])
    assert tiny.exit_code == 0, tiny.output
    jobs = [doc for doc in yaml.safe_load_all(tiny.stdout) if doc.get("kind") == "RayJob"]
    assert [job["metadata"]["labels"]["llamaops.io/step"] for job in jobs] == [
        "pretrain", "long_context", "anneal", "sft", "dpo", "safety"]
    cluster = jobs[0]["spec"]["rayClusterSpec"]
    (workers,) = cluster["workerGroupSpecs"]
    assert (workers["replicas"], workers["rayStartParams"]) == (2, {"num-cpus": "1"})
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    for template in (workers["template"], cluster["headGroupSpec"]["template"]):
        assert template["spec"]["containers"][0]["resources"] == {
            "requests": {"cpu": "500m", "memory": "1536Mi"}, "limits": {"memory": "1536Mi"}}
        assert template["spec"]["nodeSelector"] == {"pool": "cpu"}


def test_dry_run_of_a_two_round_preset_lists_its_round_and_averaging_steps_in_order():
    sets = ["--set", "post_training.rounds=2", "--set", "post_training.average_last_rounds=2"]
    result = runner.invoke(app, ["pipeline", "submit", "tiny", "--dry-run", *sets])
    assert result.exit_code == 0, result.output
    spec = next(yaml.safe_load_all(result.stdout))
    steps = [task["taskInfo"]["name"] for task in spec["root"]["dag"]["tasks"].values()]
    rounds = [f"round{n}-{stage}" for n in (1, 2) for stage in ("reward_model", "rejection_sampling", "sft", "dpo")]
    assert sorted(steps) == sorted(["start", "data", "pretrain", "long_context", "anneal", *rounds, "average", "safety",
                                    "eval", "register", "deploy"])
    bad = runner.invoke(app, ["pipeline", "submit", "tiny", "--dry-run", "--set", "post_training.average_last_rounds=3"])
    assert "average_last_rounds 3 must be 0 or between 2 and rounds (1)" in _error(bad)


def test_submit_rejects_bad_input_before_any_compute(tmp_path):
    assert "unknown preset 'huge'" in _error(runner.invoke(app, ["pipeline", "submit", "huge", "--local"]))
    assert "unknown config field 'pretrain.nope'" in _error(
        runner.invoke(app, ["pipeline", "submit", "tiny", "--local", "--set", "pretrain.nope=1"]))
    assert "CPU presets only" in _error(runner.invoke(app, ["pipeline", "submit", "70b", "--local"]))
    assert "does not exist" in _error(runner.invoke(app, [
        "pipeline", "submit", "tiny", "--local", "--tracking-uri", f"sqlite:///{tmp_path}/missing/mlflow.db"]))
    assert "no local run 'nope'" in _error(runner.invoke(app, ["pipeline", "submit", "tiny", "--local", "--resume", "nope"]))
    assert "unknown data source" in _error(runner.invoke(app, [
        "pipeline", "submit", "tiny", "--local", "--set", "data.sources=[wikipedia]"]))


def test_resume_refuses_other_settings_than_the_runs():
    from llamaops.platform.config import load_preset

    save_run(RunRecord("r1", "tiny", load_preset("tiny").model_dump_json(), "sqlite:///x.db", "file:///a", "m1"))
    assert "other settings" in _error(runner.invoke(app, [
        "pipeline", "submit", "tiny", "--local", "--resume", "r1", "--set", "pretrain.seed=7"]))
    assert "other settings (long_context.gate.windows was 64, now 8)" in _error(runner.invoke(app, [
        "pipeline", "submit", "tiny", "--local", "--resume", "r1", "--set", "long_context.gate.windows=8"]))


def test_resume_accepts_a_relaxed_long_context_gate():
    from llamaops.pipelines.local import _resumed
    from llamaops.platform.config import load_preset

    save_run(RunRecord("r2", "tiny", load_preset("tiny").model_dump_json(), "sqlite:///x.db", "file:///a", "m1"))
    relaxed = load_preset("tiny", overrides=["long_context.gate.max_extra_steps_per_stage=8",
                                             "long_context.gate.max_short_context_loss_increase=1.0"])
    record = _resumed("r2", relaxed)
    assert json.loads(record.preset_json)["long_context"]["gate"]["max_extra_steps_per_stage"] == 8


def test_compile_writes_ir_yaml(tmp_path):
    target = tmp_path / "out" / "tiny.yaml"
    result = runner.invoke(app, ["pipeline", "compile", "tiny", "-o", str(target), "--set", "pretrain.seed=3"])
    assert result.exit_code == 0, result.output
    ir, platform = yaml.safe_load_all(target.read_text())
    assert "kubernetes" in platform["platforms"]
    preset = json.loads(ir["root"]["inputDefinitions"]["parameters"]["preset_json"]["defaultValue"])
    assert preset["pretrain"]["seed"] == 3


def test_runs_lists_records_with_status_and_finished_steps():
    assert runner.invoke(app, ["pipeline", "runs"]).stdout.strip() == "no local runs"
    save_run(RunRecord("done-run", "tiny", "{}", "t", "a", "m", status="succeeded", started_at=1.0,
                       stages_done=["data", "pretrain"], model_version="3"))
    save_run(RunRecord("dead-run", "tiny", "{}", "t", "a", "m", status="running", started_at=2.0, pid=2**22 + 12345))
    rows = runner.invoke(app, ["pipeline", "runs"]).stdout.strip().splitlines()
    assert rows[0].split()[:2] == ["done-run", "succeeded"] and "done: data,pretrain" in rows[0] and "v3" in rows[0]
    assert rows[1].split()[:2] == ["dead-run", "interrupted"]


def test_a_tracking_uri_with_credentials_is_refused_for_cluster_runs():
    for target in (["--dry-run"], ["--host", "http://127.0.0.1:9"]):
        result = runner.invoke(app, ["pipeline", "submit", "tiny", *target, "--tracking-uri", "https://me:hunter2@mlflow"])
        assert result.exit_code == 2 and "hunter2" not in result.output
        assert "--tracking-uri carries credentials" in _error(result)


def test_a_cluster_contract_file_names_what_the_run_uses(tmp_path):
    from llamaops.platform.config.cluster import ClusterContract, SecretRef

    contract = tmp_path / "cluster.json"
    contract.write_text(ClusterContract(s3Secret=SecretRef(name="store", userKey="id", passwordKey="key")).model_dump_json())
    result = runner.invoke(app, ["pipeline", "submit", "8b", "--dry-run", "--cluster", str(contract)])
    assert result.exit_code == 0, result.output
    job = [doc for doc in yaml.safe_load_all(result.stdout) if doc and doc.get("kind") == "RayJob"][0]
    env = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": {"secretKeyRef": {"name": "store", "key": "key"}}} in env
    contract.write_text('{"s3Secret": {"name": "Bad_Name"}}')
    bad = _error(runner.invoke(app, ["pipeline", "submit", "8b", "--dry-run", "--cluster", str(contract)]))
    assert bad.startswith(f"error: {contract}: s3Secret.name: String should match pattern")
    assert "does not exist" in _error(runner.invoke(app, ["pipeline", "submit", "8b", "--dry-run", "--cluster",
                                                          str(tmp_path / "missing.json")]))


def _local_run_with_events(run_id: str) -> Path:
    """A failed local run as its events and step logs leave it: data finished, pretrain failed."""
    from llamaops.pipelines.events import EVENTS_ENV, StepEvent, emit, step_log_file
    from llamaops.pipelines.runs import run_dir

    save_run(RunRecord(run_id, "tiny", "{}", "sqlite:///x.db", "file:///a", "m1", status="failed", started_at=100.0,
                       ended_at=190.0, stages_done=["data"], error="step pretrain: RuntimeError: out of memory"))
    folder = run_dir(run_id)
    folder.mkdir(parents=True)
    with pytest.MonkeyPatch.context() as env:
        env.setenv(EVENTS_ENV, str(folder / "events.jsonl"))
        for event in (StepEvent("data", "started"), StepEvent("data", "finished", 12.5),
                      StepEvent("pretrain", "started"), StepEvent("pretrain", "failed", 70.0, {"error": "RuntimeError: out of memory"})):
            emit(event)
    for step, text in (("data", "read 120 documents\n"), ("pretrain", "step 1 loss 11.9\nTraceback ...\n")):
        step_log_file(folder, step).parent.mkdir(exist_ok=True)
        step_log_file(folder, step).write_text(text)
    return folder


def test_status_of_a_local_run_shows_each_step_and_the_error():
    _local_run_with_events("r1")
    result = runner.invoke(app, ["pipeline", "status", "r1"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "run r1 (tiny) failed after 90s: step pretrain: RuntimeError: out of memory"
    assert lines[1].split() == ["data", "finished", "12.5s"]
    assert lines[2].split()[:3] == ["pretrain", "failed", "70.0s"]
    view = json.loads(runner.invoke(app, ["pipeline", "status", "r1", "--json"]).stdout)
    assert view["status"] == "failed" and view["seconds"] == 90.0
    assert [(s["step"], s["status"]) for s in view["steps"]] == [("data", "finished"), ("pretrain", "failed")]
    assert view["steps"][1]["log"].endswith("steps/pretrain.log")


def test_logs_of_a_local_run_print_one_steps_log_or_all_of_them():
    _local_run_with_events("r2")
    one = runner.invoke(app, ["pipeline", "logs", "r2", "pretrain"])
    assert one.exit_code == 0 and one.stdout == "step 1 loss 11.9\nTraceback ...\n"
    every = runner.invoke(app, ["pipeline", "logs", "r2"]).stdout.splitlines()
    assert [line.split(":")[0] for line in every if line.startswith("====")] == ["==== data", "==== pretrain"]
    assert "read 120 documents" in every
    message = _error(runner.invoke(app, ["pipeline", "logs", "r2", "eval"]))
    assert message == "error: run r2 has no step 'eval' (steps: data, pretrain)"
    for command in (["status", "nope"], ["logs", "nope"], ["logs", "nope", "data"]):
        assert "no local run 'nope'" in _error(runner.invoke(app, ["pipeline", *command]))


def test_runs_and_list_print_json():
    _local_run_with_events("r3")
    runs = json.loads(runner.invoke(app, ["pipeline", "runs", "--json"]).stdout)
    assert [(r["run_id"], r["status"], r["stages_done"]) for r in runs] == [("r3", "failed", ["data"])]
    assert "preset_json" not in runs[0]
    presets = json.loads(runner.invoke(app, ["pipeline", "list", "--json"]).stdout)
    assert presets[0]["preset"] == "tiny" and presets[0]["steps"][:2] == ["data", "pretrain"]


def test_a_run_the_gate_refuses_exits_non_zero_with_the_reason_in_one_line_canned_run_result(monkeypatch):
    from llamaops.pipelines import local

    gate = {"passed": False, "failed": ["validation_perplexity"], "verdicts": [
        {"metric": "validation_perplexity", "value": 80303.7, "comparison": "<=", "threshold": 30000.0, "passed": False},
        {"metric": "violation_rate", "value": 0.0, "comparison": "<=", "threshold": 0.25, "passed": True}]}

    def refused(preset, **kwargs):  # a canned run: the CLI is under test, not the lifecycle
        record = RunRecord("r9", "tiny", "{}", "sqlite:///x.db", "file:///a", "m9", status="succeeded",
                           started_at=0.0, ended_at=400.0, model_version="1")
        registration = {"model_name": "llamaops-tiny", "version": "1", "aliases": ["candidate"],
                        "failed_thresholds": ["validation_perplexity"], "serve_command": None}
        return local.LocalRunResult(record, "sqlite:///x.db", {"metrics": {}, "gate": gate, "report_uri": "file:///r"},
                                    registration)

    monkeypatch.setattr(local, "submit_local", refused)
    result = runner.invoke(app, ["pipeline", "submit", "tiny", "--local"])
    assert result.exit_code == 1
    assert "model llamaops-tiny version 1 aliases candidate" in result.stdout
    assert result.stderr.strip().splitlines() == [
        "not promoted: the eval gate failed on validation_perplexity 80,304 (needs <= 30,000)"]
