"""The training loop in-process (one rank): learning, checkpoints, exact resume, averaged publishing."""
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from llamaops.platform.config import Preset
from llamaops.platform.config.stages import BatchRampStep, Optimizer
from llamaops.platform.model.checkpoint import load_model
from llamaops.platform.store import is_complete
from llamaops.platform.train.checkpointing import (
    latest_checkpoint,
    load_checkpoint_model,
    publish_checkpoint_model,
    step_uri,
)
from llamaops.platform.train.loop import train_worker
from llamaops.platform.train.pretrain import pretrain_job
from llamaops.platform.train.schedule import StepPlan
from llamaops.platform.train.stage_runner import prune_published

from .micro import micro_preset


def short_pretrain(steps: int = 12) -> Preset:
    preset = micro_preset()
    pretrain = preset.pretrain.model_copy(update={
        "total_tokens": 512 * steps,
        "batch_ramp": [BatchRampStep(after_tokens=0, seq_len=32, global_batch_tokens=256),
                       BatchRampStep(after_tokens=256 * 4, seq_len=64, global_batch_tokens=512)],
        "optimizer": Optimizer(peak_lr=1e-2, min_lr=1e-3, warmup_steps=2, decay_steps=steps),
        "checkpoint_every_steps": 3,
    })
    return preset.model_copy(update={"pretrain": pretrain})


def test_loss_falls_only_the_last_checkpoints_are_kept_and_publishing_prunes_them(
    tmp_path: Path, shards_uri: str, monkeypatch: pytest.MonkeyPatch
):
    job = pretrain_job(short_pretrain(), shards_uri, (tmp_path / "model").as_uri())
    progress = train_worker(job, rank=0, world=1)
    losses = [entry["loss"] for entry in progress.history]
    assert progress.step == len(job.plan) == len(losses)
    assert losses[-1] < losses[0] - 0.5
    kept = [step for step in job.checkpoint_steps if is_complete(step_uri(job.checkpoint_root, step))]
    assert kept == job.checkpoint_steps[-job.keep_checkpoints:]
    assert latest_checkpoint(job.checkpoint_root, job.checkpoint_steps) == len(job.plan)

    # Once published, the checkpoints go but the last `keep`, judged by their markers alone.
    def fetched(uri):
        raise AssertionError(f"pruning read {uri}")

    monkeypatch.setattr("llamaops.platform.train.checkpointing.fetched", fetched)
    assert prune_published(job, keep=1) == [len(job.plan)]
    assert [step for step in job.checkpoint_steps if is_complete(step_uri(job.checkpoint_root, step))] == kept[-1:]
    assert prune_published(job, keep=0) == [] and not list(Path(job.checkpoint_root[len("file://"):]).glob("step_*"))


def test_resume_after_a_stop_repeats_the_uninterrupted_losses_exactly(tmp_path: Path, shards_uri: str):
    preset = short_pretrain()
    straight = train_worker(pretrain_job(preset, shards_uri, (tmp_path / "a").as_uri()), rank=0, world=1)
    job = pretrain_job(preset, shards_uri, (tmp_path / "b").as_uri())
    stopped = train_worker(replace(job, stop_after_step=6), rank=0, world=1)
    assert stopped.step == 6
    resumed = train_worker(job, rank=0, world=1)
    assert [e["loss"] for e in resumed.history] == [e["loss"] for e in straight.history]
    assert resumed.cursor == straight.cursor
    final_a = load_checkpoint_model(straight_root := (tmp_path / "a").as_uri() + "-checkpoints", straight.step)
    final_b = load_checkpoint_model(job.checkpoint_root, resumed.step)
    assert straight_root != job.checkpoint_root
    for (name, a), b in zip(final_a.state_dict().items(), final_b.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_published_model_is_the_mean_of_its_checkpoints_written_a_shard_at_a_time(tmp_path: Path, shards_uri: str):
    job = pretrain_job(short_pretrain(steps=3), shards_uri, (tmp_path / "run").as_uri())
    job = replace(job, checkpoint_steps=[1, 2, 3], keep_checkpoints=3)
    train_worker(job, rank=0, world=1)
    parts = [load_checkpoint_model(job.checkpoint_root, step).state_dict() for step in (2, 3)]
    largest = max(t.numel() * t.element_size() for t in parts[0].values())
    max_shard_bytes = largest + 1  # every weights file holds at most one big tensor

    publish_checkpoint_model(job.checkpoint_root, [2, 3], tmp_path / "averaged", max_shard_bytes)
    files = sorted(path.name for path in (tmp_path / "averaged").glob("*.safetensors"))
    assert len(files) > 2 and files[0] == "model-00001-of-%05d.safetensors" % len(files)
    for path in (tmp_path / "averaged").glob("*.safetensors"):  # each within the bound or one tensor alone
        with safe_open(path, framework="pt") as f:
            assert len(f.keys()) == 1 or path.stat().st_size <= max_shard_bytes + 4096
    averaged = load_model(tmp_path / "averaged").state_dict()
    assert averaged.keys() == parts[0].keys()
    for name, got in averaged.items():
        assert torch.equal(got, torch.stack([parts[0][name], parts[1][name]]).mean(0)), name

    publish_checkpoint_model(job.checkpoint_root, [3], tmp_path / "last")  # one file, the checkpoint as it is
    assert [path.name for path in (tmp_path / "last").glob("*.safetensors")] == ["model.safetensors"]
    for name, got in load_model(tmp_path / "last").state_dict().items():
        assert torch.equal(got, parts[1][name]), name


def test_continuing_from_an_init_model_starts_from_its_weights(tmp_path: Path, shards_uri: str):
    from llamaops.platform.model.checkpoint import save_model
    from llamaops.platform.model.transformer import Transformer
    from llamaops.platform.store import staged_output

    preset = short_pretrain(steps=3)
    init = Transformer(preset.model)
    init.init_weights(seed=7)
    init_uri = (tmp_path / "init").as_uri()
    with staged_output(init_uri) as out:
        save_model(init, out)
    job = pretrain_job(preset, shards_uri, (tmp_path / "cont").as_uri())
    job = replace(job, init_model_uri=init_uri, plan=[StepPlan(seq_len=32, sequences=8, lr=0.0)], checkpoint_steps=[1])
    train_worker(job, rank=0, world=1)
    with_zero_lr = load_checkpoint_model(job.checkpoint_root, 1)
    # AdamW with LR 0 changes nothing: the checkpoint holds the init model's weights.
    assert torch.equal(with_zero_lr.output.weight, load_model(tmp_path / "init").output.weight)
