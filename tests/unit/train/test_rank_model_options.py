"""The layout's activation checkpointing, compile and param dtype reach the model the loop trains
(build_rank_model) in one process; the multi-process runs are in
tests/integration/train/test_precision_in_loop.py."""
import pytest
import torch

from llamaops.platform.config.parallel import ParallelLayout
from llamaops.platform.model.transformer import Transformer
from llamaops.platform.train import parallelize
from llamaops.platform.train.errors import TrainingConfigError
from llamaops.platform.train.rank_model import build_rank_model

from .parallel_worker import MICRO


def _saved_by_autograd(layout: ParallelLayout, monkeypatch) -> tuple[int, int]:
    """(bytes autograd saves outside checkpointed regions, calls of the selective policy) of one
    forward and backward of the model build_rank_model places."""
    model = Transformer(MICRO)
    model.init_weights(seed=0)
    placed = build_rank_model(model, layout, torch.device("cpu"))
    policy_calls = []
    policy = parallelize._save_matmuls
    monkeypatch.setattr(parallelize, "_save_matmuls", lambda *a, **k: policy_calls.append(1) or policy(*a, **k))
    saved = []

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        saved.append(tensor.numel() * tensor.element_size())
        return tensor

    tokens = torch.randint(0, MICRO.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = placed.parts[0](tokens, targets=tokens)
    loss.backward()
    return sum(saved), len(policy_calls)


def test_checkpointing_modes_reach_the_blocks(monkeypatch):
    none, none_policy = _saved_by_autograd(ParallelLayout(), monkeypatch)
    full, full_policy = _saved_by_autograd(ParallelLayout(activation_checkpointing="full"), monkeypatch)
    selective, selective_policy = _saved_by_autograd(ParallelLayout(activation_checkpointing="selective"), monkeypatch)
    # Checkpointed blocks hand autograd nothing but their inputs; selective's kept outputs go
    # through its policy (called in forward and in the recompute), full's do not.
    assert full < none / 2 and selective == full
    assert none_policy == full_policy == 0 < selective_policy


def test_compile_wraps_every_block():
    model = Transformer(MICRO)
    placed = build_rank_model(model, ParallelLayout(compile=True), torch.device("cpu"))
    assert all(block._compiled_call_impl is not None for block in placed.parts[0].layers.values())
    eager = build_rank_model(Transformer(MICRO), ParallelLayout(), torch.device("cpu"))
    assert all(block._compiled_call_impl is None for block in eager.parts[0].layers.values())


def test_bf16_params_without_a_process_group_are_refused_in_one_line():
    with pytest.raises(TrainingConfigError, match="^param_dtype=bf16 needs FSDP2's mixed precision"):
        build_rank_model(Transformer(MICRO), ParallelLayout(param_dtype="bf16"), torch.device("cpu"))


def test_every_training_stage_job_carries_its_layouts_options():
    from llamaops.platform.config import load_preset
    from llamaops.platform.train.anneal import anneal_job
    from llamaops.platform.train.long_context import long_context_job
    from llamaops.platform.train.pretrain import pretrain_job

    # Short budgets (the paper's give a million-step plan); two context lengths that divide the batch.
    preset = load_preset("405b", overrides=[
        "pretrain.total_tokens=100000000", "long_context.total_tokens=100000000", "long_context.seq_lens=[16384, 131072]",
    ])
    jobs = {
        "pretrain": pretrain_job(preset, "file:///d", "file:///o"),
        "long_context": long_context_job(preset, "file:///d", "file:///m", "file:///o"),
        "anneal": anneal_job(preset, "file:///d", "file:///m", "file:///o"),  # continues long context's layout
    }
    options = {stage: (job.layout.param_dtype, job.layout.activation_checkpointing) for stage, job in jobs.items()}
    assert options == {"pretrain": ("bf16", "none"), "long_context": ("bf16", "selective"), "anneal": ("bf16", "selective")}
