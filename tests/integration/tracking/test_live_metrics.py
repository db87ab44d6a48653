"""Rank 0 sends each training step's figures to the stage's run on a real MLflow server while it
trains; the publish then logs only the steps that did not arrive, so each step is logged once."""
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from llamaops.platform.tracking import PipelineTracker, tracking_client
from llamaops.platform.tracking.live_metrics import LiveMetrics, MetricStream
from llamaops.platform.train import loop
from llamaops.platform.train.pretrain import pretrain_job
from llamaops.platform.train.stage_runner import publish_trained

from ...unit.train.micro import micro_preset, micro_pretraining, write_shards

STEPS = 12
HELD_AT = 5  # the step the test holds training before, to look at the run mid-way


def _preset():
    return micro_pretraining(micro_preset(), seq_len=32, batch_tokens=256, steps=STEPS, checkpoint_every=6)


def _steps(client, run_id: str, key: str = "loss") -> list[int]:
    return sorted(metric.step for metric in client.get_metric_history(run_id, key))


def test_the_loss_curve_grows_while_the_stage_trains_and_each_step_is_logged_once(
    tmp_path: Path, mlflow_server, monkeypatch: pytest.MonkeyPatch
):
    client = tracking_client(mlflow_server.uri)
    tracker = PipelineTracker(mlflow_server.uri, "live-metrics", "run-live", "micro")
    data = write_shards((tmp_path / "shards").as_uri(), train_tokens=20_000)
    output = (tmp_path / "model").as_uri()
    release, calls = threading.Event(), []
    train_step = loop._train_step

    def held_train_step(*args, **kwargs):
        calls.append(1)
        if len(calls) == HELD_AT:
            assert release.wait(timeout=120), "the test never looked at the running stage"
        return train_step(*args, **kwargs)

    monkeypatch.setattr(loop, "_train_step", held_train_step)
    preset = _preset()
    with tracker.stage("pretrain") as run:
        stream = MetricStream(mlflow_server.uri, run.run_id, every_s=0, system_every_s=0.5)
        job = replace(pretrain_job(preset, data, output), metrics=stream)
        trained: list = []
        worker = threading.Thread(target=lambda: trained.append(loop.train_worker(job, rank=0, world=1)))
        worker.start()
        try:
            # Mid-run: the steps before the held one are on the server; the run is still running.
            wait_for(lambda: _steps(client, run.run_id) == list(range(1, HELD_AT)))
            assert worker.is_alive() and client.get_run(run.run_id).info.status == "RUNNING"
            assert _steps(client, run.run_id, "lr") == list(range(1, HELD_AT))
            wait_for(lambda: "system/cpu_utilization_percentage" in client.get_run(run.run_id).data.metrics)
        finally:
            release.set()
            worker.join(timeout=300)
        assert trained and trained[0].step == STEPS
        assert _steps(client, run.run_id) == list(range(1, STEPS + 1))

        result = publish_trained(preset, job, output, run, resumed_from=None)
        # A sender opened again (a restarted worker group) skips the steps the run holds.
        again = LiveMetrics(job.metrics)
        again.step(3, {"loss": 9.0})
        again.close()
    assert _steps(client, run.run_id) == list(range(1, STEPS + 1))
    assert result.metrics["final_loss"] == trained[0].history[-1]["loss"]


def test_training_goes_on_when_tracking_fails_and_the_publish_logs_every_step(tmp_path: Path, mlflow_server):
    client = tracking_client(mlflow_server.uri)
    tracker = PipelineTracker(mlflow_server.uri, "live-metrics", "run-unreachable", "micro")
    data = write_shards((tmp_path / "shards").as_uri(), train_tokens=20_000)
    output = (tmp_path / "model").as_uri()
    preset = _preset()
    with tracker.stage("pretrain") as run:
        # A run id the server does not have: every request of the sender fails.
        job = replace(pretrain_job(preset, data, output), metrics=MetricStream(mlflow_server.uri, "0" * 32, every_s=0, system_every_s=0.5))
        assert loop.train_worker(job, rank=0, world=1).step == STEPS
        assert _steps(client, run.run_id) == []
        publish_trained(preset, job, output, run, resumed_from=None)
    assert _steps(client, run.run_id) == list(range(1, STEPS + 1))


def wait_for(condition, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
