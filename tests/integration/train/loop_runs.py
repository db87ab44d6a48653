"""Short training-loop runs (train_worker) on the micro model, in this process or on N gloo processes."""
import json
import pickle
from dataclasses import replace
from pathlib import Path

import pytest

from llamaops.platform.config.parallel import ParallelLayout
from llamaops.platform.train.loop import TrainingJob, train_worker
from llamaops.platform.train.schedule import StepPlan

from ...unit.train.micro import micro_preset, write_shards
from ...unit.train.parallel_launch import launch

LOOP_WORKER = Path(__file__).parents[2] / "unit" / "train" / "loop_worker.py"
STEPS = 4


def loop_job(tmp_path: Path, name: str, layout: ParallelLayout, **changes) -> TrainingJob:
    data = tmp_path / "shards"
    if not data.exists():
        write_shards(data.as_uri(), train_tokens=20_000)
    model = micro_preset().model.model_copy(update={"n_layers": 4})  # 4 stages for interleaved PP2
    plan = [StepPlan(seq_len=32, sequences=8, lr=1e-2 / (1 + step)) for step in range(STEPS)]
    job = TrainingJob(
        model=model, plan=plan, data_uri=data.as_uri(), checkpoint_root=(tmp_path / name).as_uri(),
        checkpoint_steps=[2, 4], keep_checkpoints=2, layout=layout, async_checkpoints=True,
        peak_flops=1e12,  # no matmul-peak measurement in the ranks
    )
    return replace(job, **changes)


def run_loop(tmp_path: Path, job: TrainingJob, world: int, name: str, in_process: bool = True,
             own_filesystems: bool = False) -> list[dict]:
    """The run's per-step history; world 1 runs in this process (no process group) unless
    `in_process` is False (then one gloo process of its own). `own_filesystems`: no rank sees
    another's files (parallel_launch's private tmpfs per rank)."""
    if world == 1 and in_process:
        return train_worker(job, rank=0, world=1).history
    job_file, history = tmp_path / f"{name}.job", tmp_path / f"{name}.json"
    job_file.write_bytes(pickle.dumps(job))
    (tmp_path / f"{name}-ranks").mkdir()
    private = tmp_path / f"{name}-rank-fs" if own_filesystems else None
    if private:
        private.mkdir()
    launch(world, [str(job_file), str(history)], tmp_path / f"{name}-ranks", worker=LOOP_WORKER, own_filesystem=private)
    return json.loads(history.read_text())


def assert_same_training(got: list[dict], want: list[dict], rel: float = 1e-5, abs: float = 1e-6) -> None:
    assert [e["step"] for e in got] == [e["step"] for e in want]
    for key in ("loss", "grad_norm"):
        assert [e[key] for e in got] == pytest.approx([e[key] for e in want], rel=rel, abs=abs), key
