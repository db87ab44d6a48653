from llamaops.pipelines.events import EVENTS_ENV, EventFollower, StepEvent, emit, step_output


def test_follower_returns_each_complete_event_once(tmp_path, monkeypatch):
    path = tmp_path / "events.jsonl"
    monkeypatch.setenv(EVENTS_ENV, str(path))
    follower = EventFollower(path)
    assert follower.new_events() == []
    emit(StepEvent("data", "started"))
    emit(StepEvent("data", "finished", 1.5, {"output": "file:///x"}))
    with path.open("a") as file:
        file.write('{"step": "pretrain", "sta')  # a line still being written
    events = follower.new_events()
    assert [(e.step, e.status) for e in events] == [("data", "started"), ("data", "finished")]
    assert events[1].seconds == 1.5 and events[1].detail == {"output": "file:///x"}
    with path.open("a") as file:
        file.write('tus": "started", "seconds": 0, "detail": {}, "at": 1.0}\n')
    assert [(e.step, e.status) for e in follower.new_events()] == [("pretrain", "started")]


def test_without_the_variable_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.delenv(EVENTS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    emit(StepEvent("data", "started"))
    assert list(tmp_path.iterdir()) == []


def test_a_new_follower_skips_events_of_an_earlier_attempt(tmp_path, monkeypatch):
    path = tmp_path / "events.jsonl"
    monkeypatch.setenv(EVENTS_ENV, str(path))
    emit(StepEvent("data", "finished", 2.0))
    follower = EventFollower(path)
    emit(StepEvent("data", "skipped"))
    assert [(e.step, e.status) for e in follower.new_events()] == [("data", "skipped")]


STEP_PRINTS = """
import os, subprocess, sys
from llamaops.pipelines.events import step_output
print("before", flush=True)
with step_output("pretrain"):
    print("from python", flush=True)
    print("to stderr", file=sys.stderr, flush=True)
    subprocess.run(["sh", "-c", "echo from a child process"], check=True)
    os.write(1, b"from the file descriptor\\n")
print("after", flush=True)
"""


def test_a_steps_output_and_its_childrens_go_to_the_steps_log_in_a_local_run(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, EVENTS_ENV: str(tmp_path / "events.jsonl")}
    out = subprocess.run([sys.executable, "-c", STEP_PRINTS], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["before", "after"] and out.stderr == ""
    log = (tmp_path / "steps" / "pretrain.log").read_text()
    assert log.splitlines() == ["from python", "to stderr", "from a child process", "from the file descriptor"]
    env.pop(EVENTS_ENV)  # on a cluster: the output stays the pod's
    out = subprocess.run([sys.executable, "-c", STEP_PRINTS], env=env, capture_output=True, text=True, timeout=120)
    assert "from a child process" in out.stdout and "to stderr" in out.stderr


def test_progress_is_reported_at_most_every_few_seconds_and_at_the_last_step(tmp_path):
    import json

    from llamaops.platform.tracking.step_events import ProgressChannel, ProgressReporter

    path = tmp_path / "events.jsonl"
    clock = [100.0]
    reporter = ProgressReporter(ProgressChannel(str(path), "pretrain", every_s=5.0), total=10, first=2,
                                clock=lambda: clock[0])
    for done in range(3, 11):  # a restored run: steps 3..10, two seconds each
        clock[0] += 2
        reporter.step(done, {"loss": 7.123456})
    events = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(e["step"], e["status"]) for e in events] == [("pretrain", "progress")] * 4
    assert [e["detail"]["done"] for e in events] == [3, 6, 9, 10]
    assert events[1]["detail"] == {"done": 6, "total": 10, "eta_s": 8.0, "loss": 7.1235}
    ProgressReporter(None, total=10).step(10, {"loss": 1.0})  # outside a local run: nothing, nowhere


def test_a_progress_channel_exists_only_inside_a_local_runs_step(monkeypatch, tmp_path):
    from llamaops.platform.tracking.step_events import STEP_ENV, ProgressChannel

    monkeypatch.delenv(STEP_ENV, raising=False)
    monkeypatch.setenv(EVENTS_ENV, str(tmp_path / "events.jsonl"))
    assert ProgressChannel.from_env() is None
    with step_output("sft"):
        assert ProgressChannel.from_env() == ProgressChannel(str(tmp_path / "events.jsonl"), "sft")
    assert ProgressChannel.from_env() is None
