"""The long-context stages gated on short-context loss, on two Ray Train workers (gloo), micro model.
The workers measure the gate; the driver loads no model for it and runs no forward pass."""
import json
import shutil
from pathlib import Path

import pytest

from llamaops.platform.config import Preset
from llamaops.platform.model.transformer import Transformer
from llamaops.platform.store import is_complete
from llamaops.platform.train import long_context, stage_runner
from llamaops.platform.train.checkpointing import is_valid_checkpoint, latest_checkpoint, load_progress
from llamaops.platform.train.context_gate import ShortContextNotRecovered, load_record, save_record
from llamaops.platform.train.gate_checks import figures_uri, load_figures
from llamaops.platform.train.long_context import run_long_context
from llamaops.platform.train.pretrain import run_pretrain

from ...unit.train.micro import micro_preset, micro_pretraining, write_shards


class Recorder:
    def __init__(self) -> None:
        self.logged: dict[str, float] = {}

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.logged.update(metrics)


def gated_preset(lr: float = 1e-3, **gate) -> Preset:
    """Pretraining at 64 tokens, then one step at 512 and one at 1024, checked on 16 windows of 64."""
    preset = micro_pretraining(micro_preset(), seq_len=64, batch_tokens=512, steps=12, checkpoint_every=12,
                               decay_steps=10)
    settings = {"windows": 16, "max_short_context_loss_increase": 0.05} | gate
    long_context = preset.long_context.model_copy(update={
        "total_tokens": 4096, "global_batch_tokens": 2048, "lr": lr, "checkpoint_every_steps": 100,
        "gate": preset.long_context.gate.model_copy(update=settings),
    })
    return preset.model_copy(update={"long_context": long_context})


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> str:
    uri = (tmp_path_factory.mktemp("data") / "shards").as_uri()
    return write_shards(uri, train_tokens=30_000, validation_documents=20)


@pytest.fixture(scope="module")
def pretrained(local_ray, shards: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    out = (tmp_path_factory.mktemp("pretrain") / "model").as_uri()
    return run_pretrain(gated_preset(), shards, out).outputs["model"]


def _no_model_in_the_driver(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """Make any forward pass or whole-model load in this (the driver's) process fail; publishing
    the trained model streams it from the checkpoints a group of tensors at a time (no forward, no
    whole model): the checkpoint steps each publish reads are returned."""
    def no_forward(*args, **kwargs):
        raise AssertionError("the driver ran a forward pass")

    def no_load(*args, **kwargs):
        raise AssertionError("the driver loaded a whole model")

    published: list[list[int]] = []
    publish = stage_runner.publish_checkpoint_model

    def publishing(root: str, steps: list[int], output):
        published.append(list(steps))
        return publish(root, steps, output)

    monkeypatch.setattr(Transformer, "forward", no_forward)
    monkeypatch.setattr("llamaops.platform.model.checkpoint.load_model", no_load)
    monkeypatch.setattr("llamaops.platform.train.checkpointing.load_checkpoint_model", no_load)
    monkeypatch.setattr(stage_runner, "publish_checkpoint_model", publishing)
    return published


def _counted_runs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """The stage ends each training run (one worker group) was to check, in order."""
    runs: list[tuple[int, ...]] = []
    run_job = long_context.run_job

    def counted(preset, job, *args, **kwargs):
        runs.append(job.gate.stop_steps)
        return run_job(preset, job, *args, **kwargs)

    monkeypatch.setattr(long_context, "run_job", counted)
    return runs


@pytest.mark.slow
def test_a_healthy_run_recovers_at_every_stage_and_reports_the_figures(
    shards: str, pretrained: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    recorder = Recorder()
    published = _no_model_in_the_driver(monkeypatch)
    worker_groups = _counted_runs(monkeypatch)
    result = run_long_context(gated_preset(), shards, pretrained, (tmp_path / "lc").as_uri(), recorder)
    assert published == [[2]]  # the final model only; every gate figure came from the workers
    assert worker_groups == [(1, 2)]  # one run through both stages, each checked at its end
    root = (tmp_path / "lc-checkpoints").as_uri()
    assert [load_figures(root, step)["short_loss"] for step in (0, 1, 2)] == [
        result.report["gate"]["baseline_short_loss"], *(s["short_loss"] for s in result.report["gate"]["stages"])]
    gate = result.report["gate"]
    assert [stage["seq_len"] for stage in gate["stages"]] == [512, 1024]
    assert all(stage["recovered"] and stage["passed"] and stage["extra_steps"] == 0 for stage in gate["stages"])
    assert all(stage["needle_accuracy"] is None for stage in gate["stages"])  # none configured: micro vocabulary
    assert gate["short_context_seq_len"] == 64 and gate["windows"] == 16
    baseline = gate["baseline_short_loss"]
    assert 0 < baseline < 6.0  # the pretrained model learnt the motifs (uniform: ln 512 = 6.2)
    for stage in gate["stages"]:
        assert stage["short_loss_before"] == baseline and stage["loss_increase"] <= 0.05
        assert result.metrics[f"long_context.gate.{stage['seq_len']}.short_loss"] == stage["short_loss"]
        assert result.metrics[f"long_context.gate.{stage['seq_len']}.recovered"] == 1.0
    assert result.metrics["long_context.gate.baseline_short_loss"] == baseline
    assert [entry["seq_len"] for entry in result.report["history"]] == [512, 1024]
    assert is_complete(result.outputs["model"])
    print(f"healthy: baseline {baseline:.4f}, after stages {[round(s['short_loss'], 4) for s in gate['stages']]}")


@pytest.mark.slow
def test_a_run_that_cannot_recover_fails_in_one_line_then_resumes_with_a_relaxed_gate(
    shards: str, pretrained: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    output = (tmp_path / "lc").as_uri()
    root = output + "-checkpoints"
    broken = gated_preset(lr=5.0, max_extra_steps_per_stage=1, check_every_extra_steps=1)  # AdamW steps of ~5 per weight
    recorder = Recorder()
    worker_groups = _counted_runs(monkeypatch)
    with pytest.raises(ShortContextNotRecovered) as failure:
        run_long_context(broken, shards, pretrained, output, recorder)
    assert worker_groups == [(1, 2), (2, 3)]  # each run ended at the failed stage 1, never trained stage 2
    line = str(failure.value)
    print(f"broken: {line}")
    assert "\n" not in line
    assert line.startswith("long_context stage 1 (seq_len 512) did not pass its gate: short-context loss")
    assert "after 2 steps (1 extra, max 1)" in line and root in line
    assert not is_complete(output)
    assert recorder.logged["long_context.gate.512.passed"] == 0.0  # the figures reach MLflow before the failure
    assert recorder.logged["long_context.gate.512.extra_steps"] == 1
    record = load_record(root)
    assert record.extra_steps == [1, 0] and [check["step"] for check in record.checks] == [1, 2]
    assert all(check["short_loss"] - record.baseline_loss > 0.05 for check in record.checks)
    assert is_valid_checkpoint(root, 1) and is_valid_checkpoint(root, 2)  # kept to resume from
    assert latest_checkpoint(root, list(range(1, 4))) == 2
    trained = load_progress(root, 2).history
    # As a run of the earlier driver-side gate, stopped after training the extra step but before
    # its check: the same record format, without the check and without the workers' figures.
    measured = record.checks.pop()
    save_record(root, record)
    shutil.rmtree(figures_uri(root, 2).removeprefix("file://"))

    relaxed = gated_preset(lr=5.0, max_extra_steps_per_stage=1, check_every_extra_steps=1,
                           max_short_context_loss_increase=None)
    resumed = run_long_context(relaxed, shards, pretrained, output)
    assert worker_groups[2:] == [(2, 3)]  # stage 1 measured again at its restored end, then stage 2
    assert resumed.report["resumed_from_step"] == 2
    assert resumed.report["history"][:2] == trained  # the finished segments were not trained again
    assert [entry["seq_len"] for entry in resumed.report["history"]] == [512, 512, 1024]
    gate = resumed.report["gate"]
    assert [len(stage["checks"]) for stage in gate["stages"]] == [2, 1]  # stage 1 not checked again
    assert gate["stages"][0]["short_loss"] == measured["short_loss"]  # measured again at the restored step 2
    assert json.loads(json.dumps(gate)) == gate  # JSON-able, as the pipeline step writes it
    assert is_complete(output)
