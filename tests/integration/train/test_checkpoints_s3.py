"""Checkpoints on real S3 (SeaweedFS): pruning old steps and exact resume, in-process (no Ray)."""
from dataclasses import replace
from pathlib import Path

from llamaops.platform.store import is_complete
from llamaops.platform.train.checkpointing import step_uri
from llamaops.platform.train.loop import train_worker
from llamaops.platform.train.pretrain import pretrain_job

from ...unit.train.micro import micro_pretraining, micro_preset, write_shards


def test_checkpoints_on_s3_are_pruned_and_resume_exactly(s3_server, s3_bucket: str, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("LLAMAOPS_HOME", str(tmp_path / "home"))
    preset = micro_pretraining(micro_preset(), seq_len=32, batch_tokens=256, steps=9, checkpoint_every=3)
    data = write_shards(f"{s3_bucket}/shards", train_tokens=5_000)

    local = train_worker(pretrain_job(preset, data, (tmp_path / "local").as_uri()), rank=0, world=1)
    job = pretrain_job(preset, data, f"{s3_bucket}/model")
    assert job.checkpoint_root == f"{s3_bucket}/model-checkpoints"
    train_worker(replace(job, stop_after_step=3), rank=0, world=1)
    resumed = train_worker(job, rank=0, world=1)

    assert [e["loss"] for e in resumed.history] == [e["loss"] for e in local.history]
    kept = [step for step in job.checkpoint_steps if is_complete(step_uri(job.checkpoint_root, step))]
    assert kept == [6, 9]
    bucket = s3_bucket.removeprefix("s3://")
    pruned = list(s3_server.client().list_objects(bucket, prefix="model-checkpoints/step_000003/", recursive=True))
    assert pruned == []
