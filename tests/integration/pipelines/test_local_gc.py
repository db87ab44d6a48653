"""`llamaops gc` on local runs with a real MLflow registry (sqlite): old runs go, the newest stay, a
running run is never touched, and a registered model's folder outlives its run's other files."""
import os
import re
import subprocess
import sys

from typer.testing import CliRunner

from llamaops.cli.main import app
from llamaops.pipelines.runs import RunRecord, list_runs, run_dir, save_run

runner = CliRunner()


def _run(home, run_id: str, started: float, tracking: str, pid: int | None = None, status: str = "succeeded"):
    artifacts = home / "artifacts" / run_id
    for step in ("data", "pretrain-checkpoints/step_000010", "safety"):
        (artifacts / step).mkdir(parents=True)
        (artifacts / step / "weights.bin").write_bytes(b"\0" * 1000)
        (artifacts / step / "_COMPLETE").write_text("")
    run_dir(run_id).mkdir(parents=True)
    (run_dir(run_id) / "steps.log").write_text("log\n")
    save_run(RunRecord(run_id, "tiny", "{}", tracking, (home / "artifacts").as_uri(), "m", status=status,
                       started_at=started, ended_at=None if status == "running" else started + 60,
                       pid=pid or os.getpid()))
    return artifacts


def test_gc_removes_old_runs_but_the_newest_a_running_one_and_registered_models(tmp_path, monkeypatch):
    from llamaops.platform.tracking import register_model

    home = tmp_path / "home"
    monkeypatch.setenv("LLAMAOPS_HOME", str(home))
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    old = _run(home, "r-old", 1000.0, tracking, pid=int(dead.stdout))
    served = _run(home, "r-served", 2000.0, tracking, pid=int(dead.stdout))
    running = _run(home, "r-running", 3000.0, tracking, status="running")  # this process: alive
    newest = _run(home, "r-newest", 4000.0, tracking, pid=int(dead.stdout))
    register_model("llamaops-tiny", (served / "safety").as_uri(), alias="production", tracking_uri=tracking)

    dry = runner.invoke(app, ["gc", "--keep-last", "1", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    lines = dry.stdout.splitlines()  # sizes: 1,000-byte weights, plus logs and records
    assert len(lines) == 3 and re.fullmatch(r"r-old: would remove 3\.\d KB", lines[0]), lines
    assert re.fullmatch(r"r-served: would remove 2\.0 KB; keeps safety \(llamaops-tiny version 1 \(production\)\)",
                        lines[1]), lines
    assert re.fullmatch(r"dry run: would free 5\.\d KB", lines[2]), lines
    assert old.exists() and (home / "runs" / "r-old.json").exists()

    result = runner.invoke(app, ["gc", "--keep-last", "1"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == lines[2].replace("dry run: would free", "freed")
    assert not old.exists() and not run_dir("r-old").exists()
    assert sorted(p.name for p in served.iterdir()) == ["safety"] and not run_dir("r-served").exists()
    assert running.exists() and newest.exists() and run_dir("r-running").exists()
    assert [r.run_id for r in list_runs()] == ["r-served", "r-running", "r-newest"]
    again = runner.invoke(app, ["gc", "--keep-last", "1"])
    assert "r-served: removes 0 B; keeps safety" in again.stdout
