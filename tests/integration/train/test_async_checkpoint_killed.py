"""A training process killed while its asynchronous checkpoint is being written (right after
DCP async_save returned, the background write in flight) leaves the previous checkpoint as the
latest, and resuming from it repeats the uninterrupted run's losses bitwise."""
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

from llamaops.platform.store import is_complete
from llamaops.platform.store.uri import local_path
from llamaops.platform.train.checkpointing import latest_checkpoint, step_uri
from llamaops.platform.train.loop import train_worker
from llamaops.platform.train.pretrain import pretrain_job

from ...unit.train.micro import write_shards
from ...unit.train.test_loop import short_pretrain

KILLED_MID_SAVE = textwrap.dedent("""
    import os, pickle, sys
    import torch.distributed.checkpoint as dcp
    from llamaops.platform.train.loop import train_worker

    job, kill_at = pickle.load(open(sys.argv[1], "rb")), int(sys.argv[2])
    real_async_save = dcp.async_save

    def async_save(state, checkpoint_id, **kwargs):
        future = real_async_save(state, checkpoint_id=checkpoint_id, **kwargs)
        if f"step_{kill_at:06d}" in str(checkpoint_id):
            os._exit(3)  # killed while the background thread writes the files
        return future

    dcp.async_save = async_save
    train_worker(job, rank=0, world=1)
""")


def test_a_process_killed_mid_save_resumes_from_the_previous_checkpoint(tmp_path: Path):
    shards_uri = write_shards((tmp_path / "shards").as_uri(), train_tokens=20_000)
    preset = short_pretrain()
    straight = train_worker(pretrain_job(preset, shards_uri, (tmp_path / "straight").as_uri()), rank=0, world=1)
    job = pretrain_job(preset, shards_uri, (tmp_path / "killed").as_uri())
    killed_at = job.checkpoint_steps[1]
    (tmp_path / "job.pkl").write_bytes(pickle.dumps(job))
    run = subprocess.run([sys.executable, "-c", KILLED_MID_SAVE, str(tmp_path / "job.pkl"), str(killed_at)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 3, run.stderr[-2000:]
    assert latest_checkpoint(job.checkpoint_root, job.checkpoint_steps) == job.checkpoint_steps[0]
    assert not is_complete(step_uri(job.checkpoint_root, killed_at))
    assert list(local_path(job.checkpoint_root).glob(f".step_{killed_at:06d}.tmp-*"))  # its save had begun
    resumed = train_worker(job, rank=0, world=1)
    assert [e["loss"] for e in resumed.history] == [e["loss"] for e in straight.history]
