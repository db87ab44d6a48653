"""Checkpoints on real S3 (SeaweedFS): pruning old steps and exact resume, in-process (no Ray), and
two ranks that share no filesystem writing and resuming one checkpoint."""
import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from llamaops.platform.config.parallel import ParallelLayout
from llamaops.platform.store import is_complete
from llamaops.platform.train.checkpointing import step_uri
from llamaops.platform.train.loop import train_worker
from llamaops.platform.train.pretrain import pretrain_job

from ...unit.train.micro import micro_preset, micro_pretraining, write_shards
from .loop_runs import assert_same_training, loop_job, run_loop


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


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="a private filesystem per rank needs root and unshare(1) (one mount namespace per rank)")
def test_ranks_that_share_no_filesystem_checkpoint_to_s3_and_resume(s3_server, s3_bucket: str, tmp_path: Path):
    """Each rank's LLAMAOPS_HOME and TMPDIR on its own tmpfs, as pods on separate nodes: no staging
    path may pass from one rank to another. Stopped after the first checkpoint, resumed on fresh
    filesystems, the run repeats the uninterrupted one on a shared filesystem."""
    layout = ParallelLayout(dp=2)
    straight = run_loop(tmp_path, loop_job(tmp_path, "straight", layout), 2, "straight")
    job = replace(loop_job(tmp_path, "unused", layout), data_uri=write_shards(f"{s3_bucket}/shards", train_tokens=20_000),
                  checkpoint_root=f"{s3_bucket}/run-checkpoints")
    stopped = run_loop(tmp_path, replace(job, stop_after_step=2), 2, "stopped", own_filesystems=True)
    resumed = run_loop(tmp_path, job, 2, "resumed", own_filesystems=True)

    assert [entry["step"] for entry in stopped] == [1, 2]
    assert_same_training(resumed, straight)
    bucket = s3_bucket.removeprefix("s3://")
    marker = s3_server.client().get_object(bucket, "run-checkpoints/step_000004/_COMPLETE").read()
    files = json.loads(marker)["files"]
    assert {"rng/rank_00000.pt", "rng/rank_00001.pt", "state/.metadata", "progress.json"} <= set(files)
    assert {name.split("_")[2] for name in files if name.endswith(".distcp")} == {"0", "1"}  # state/__<rank>_<n>
