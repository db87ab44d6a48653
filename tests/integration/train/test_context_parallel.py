"""Context parallelism (platform/train/context_parallel.py) on real gloo processes: loss and every
gradient match the unsharded model at 1e-5 relative in fp32, and a wrong chunk order or document
mask is caught (tests/unit/train/cp_worker.py)."""
from pathlib import Path

import pytest

from ...unit.train.parallel_launch import launch
from .test_distributed_equivalence import _inductor_cpu_toolchain_missing

CP_WORKER = Path(__file__).parents[2] / "unit" / "train" / "cp_worker.py"
RESHARD_WORKER = CP_WORKER.with_name("reshard_worker.py")


def test_two_context_parallel_ranks_match_the_unsharded_model(tmp_path: Path):
    # plain causal; packed documents crossing chunk boundaries; with activation checkpointing (both
    # prefix kernels under selective's recompute); bf16 and three AdamW steps with clipping, as the
    # training loop runs them
    launch(2, ["cp2", "cp2-docs", "cp2-docs-selective", "cp2-selective", "cp2-full-bf16", "cp2-docs-steps"], tmp_path,
           worker=CP_WORKER)


@pytest.mark.slow
def test_four_ranks_context_parallel_with_fsdp_and_tensor_parallel_match_the_unsharded_model(tmp_path: Path):
    # FSDP2 over dp x cp; CP x TP (sequence parallel inside each cp rank); four cp ranks
    launch(4, ["dp2cp2", "dp2cp2-docs-steps", "cp2tp2-docs-steps", "cp4-docs"], tmp_path, worker=CP_WORKER)


@pytest.mark.slow
@pytest.mark.skipif(_inductor_cpu_toolchain_missing() is not None, reason=str(_inductor_cpu_toolchain_missing()))
def test_compiled_blocks_under_context_parallelism_match_the_unsharded_model(tmp_path: Path):
    # torch.compile per block with the K/V all-gather inside attention, packed documents or plain
    # rows (each prefix kernel's autograd function under dynamo).
    launch(2, ["cp2-docs-compile", "cp2-compile"], tmp_path, worker=CP_WORKER, timeout=600)


@pytest.mark.slow
def test_a_checkpoint_written_by_2_fsdp_ranks_resumes_under_context_parallelism(tmp_path: Path):
    # DCP reshards FSDP over dp 2 into FSDP over dp x cp = 1 x 2; the next step matches the writer's.
    root, expected = (tmp_path / "ckpt").as_uri(), str(tmp_path / "expected.pt")
    launch(2, ["write", root, expected], tmp_path, worker=RESHARD_WORKER)
    (tmp_path / "cp").mkdir()
    launch(2, ["resume-cp", root, expected], tmp_path / "cp", worker=RESHARD_WORKER)
