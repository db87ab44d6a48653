"""Real multi-process torch.distributed on CPU (gloo, 2 and 4 local processes): parallelized micro
models match the unsharded model (loss, logits and every gradient), and a checkpoint written by
one layout resumes in another. Scenario names: tests/unit/train/parallel_worker.parse."""
import shutil
from pathlib import Path

import pytest

from ...unit.train.parallel_launch import launch

RESHARD_WORKER = Path(__file__).parents[2] / "unit" / "train" / "reshard_worker.py"


def test_two_processes_fsdp_and_tensor_parallel_match_the_unsharded_model(tmp_path: Path):
    launch(2, ["dp2", "tp2", "tp2-full", "dp2-selective", "dp2-bf16", "tp2-selective-bf16"], tmp_path)


@pytest.mark.slow
def test_four_processes_2d_fsdp_x_tensor_parallel_match_the_unsharded_model(tmp_path: Path):
    launch(4, ["dp2tp2", "dp2tp2-selective-bf16", "dp4-full"], tmp_path)


@pytest.mark.slow
def test_written_by_2_fsdp_ranks_it_resumes_on_4_fsdp_x_tp_ranks(tmp_path: Path):
    root, expected = (tmp_path / "ckpt").as_uri(), str(tmp_path / "expected.pt")
    launch(2, ["write", root, expected], tmp_path, worker=RESHARD_WORKER)
    launch(4, ["resume", root, expected], tmp_path, worker=RESHARD_WORKER)


def _inductor_cpu_toolchain_missing() -> str | None:
    """Why torch.compile cannot build CPU kernels here, or None when it can."""
    if shutil.which("g++") is None and shutil.which("c++") is None:
        return "no C++ compiler on PATH: inductor cannot build CPU kernels"
    return None


@pytest.mark.slow
@pytest.mark.skipif(_inductor_cpu_toolchain_missing() is not None, reason=str(_inductor_cpu_toolchain_missing()))
def test_compiled_blocks_match_the_eager_unsharded_model(tmp_path: Path):
    # torch.compile per block (parallelize(compile_blocks=True)) under FSDP2, with and without
    # selective checkpointing. TP + compile is refused by parallelize (wrong embedding gradients).
    launch(2, ["dp2-compile", "dp2-selective-compile"], tmp_path, timeout=600)


PIPELINE_WORKER = Path(__file__).parents[2] / "unit" / "train" / "pipeline_worker.py"


@pytest.mark.parametrize("schedule", ["1f1b", "interleaved"])
def test_two_pipeline_ranks_match_the_unsharded_model(tmp_path: Path, schedule: str):
    # torch.distributed.pipelining over stages cut by platform/train/pipeline.split_stage.
    launch(2, [schedule], tmp_path, worker=PIPELINE_WORKER)


@pytest.mark.slow
@pytest.mark.parametrize("schedule", ["1f1b", "interleaved"])
def test_four_ranks_pipeline_x_fsdp_match_the_unsharded_model(tmp_path: Path, schedule: str):
    # mesh [dp=2, pp=2]: each stage FSDP2-sharded over its dp group, the batch split over dp.
    launch(4, [schedule, "2"], tmp_path, worker=PIPELINE_WORKER)
