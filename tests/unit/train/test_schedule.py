import math

import pytest

from llamaops.platform.config import load_preset
from llamaops.platform.config.stages import AnnealConfig, Optimizer
from llamaops.platform.train.errors import TrainingConfigError
from llamaops.platform.train.schedule import (
    anneal_plan,
    checkpoint_steps,
    learning_rate,
    long_context_plan,
    pretrain_plan,
)


def test_warmup_then_cosine_to_floor():
    opt = Optimizer(peak_lr=1.0, min_lr=0.1, warmup_steps=4, decay_steps=10)
    assert [learning_rate(opt, s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert learning_rate(opt, 4) == pytest.approx(1.0)
    assert learning_rate(opt, 9) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert learning_rate(opt, 14) == pytest.approx(0.1)
    assert learning_rate(opt, 1000) == pytest.approx(0.1)


def test_linear_decay():
    opt = Optimizer(peak_lr=1.0, min_lr=0.0, warmup_steps=0, decay_steps=4, decay="linear")
    assert [learning_rate(opt, s) for s in range(5)] == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0])


def test_pretrain_plan_follows_the_batch_ramp_by_tokens_seen():
    cfg = load_preset("tiny").pretrain
    plan = pretrain_plan(cfg)
    assert sum(step.tokens for step in plan) >= cfg.total_tokens
    switch = cfg.batch_ramp[1]
    seen = 0
    for step in plan:
        expected = switch if seen >= switch.after_tokens else cfg.batch_ramp[0]
        assert (step.seq_len, step.tokens) == (expected.seq_len, expected.global_batch_tokens)
        seen += step.tokens
    assert plan[0].lr < plan[cfg.optimizer.warmup_steps - 1].lr == cfg.optimizer.peak_lr


def test_paper_ramp_starts_at_4k_and_ends_at_8k_16m():
    plan_cfg = load_preset("8b").pretrain
    assert (plan_cfg.batch_ramp[0].seq_len, plan_cfg.batch_ramp[-1].global_batch_tokens) == (4096, 16 * 2**20)


def test_long_context_plan_visits_each_length_in_order():
    cfg = load_preset("tiny").long_context
    plan = long_context_plan(cfg)
    lengths = [step.seq_len for step in plan]
    assert lengths == sorted(lengths) and set(lengths) == set(cfg.seq_lens)
    assert sum(step.tokens for step in plan) >= cfg.total_tokens
    assert all(step.lr == cfg.lr for step in plan)


def test_paper_context_stages_take_the_most_whole_sequences_that_split_evenly():
    cfg = load_preset("405b").long_context  # 16M tokens, DP 4 x 32 microbatches
    by_length = {step.seq_len: step for step in long_context_plan(cfg)}
    assert by_length[131_072].sequences == 128 and by_length[16_384].sequences == 1024  # exact
    assert by_length[49_152].sequences == 256  # 341 fit; 256 is the largest multiple of 128
    assert by_length[98_304].sequences == 128
    assert all(step.sequences % 128 == 0 and step.tokens <= cfg.global_batch_tokens for step in by_length.values())
    stage_tokens = {}
    for step in long_context_plan(cfg):
        stage_tokens[step.seq_len] = stage_tokens.get(step.seq_len, 0) + step.tokens
    share = cfg.total_tokens / len(cfg.seq_lens)  # each stage still trains on its share
    assert all(share <= tokens < share + cfg.global_batch_tokens for tokens in stage_tokens.values())


def test_a_context_batch_smaller_than_dp_x_microbatches_is_refused():
    cfg = load_preset("405b").long_context.model_copy(update={"global_batch_tokens": 2**20})
    with pytest.raises(TrainingConfigError, match="fewer than dp x microbatches = 128 sequences of 16384 tokens"):
        long_context_plan(cfg)


def test_anneal_lr_falls_linearly_to_zero():
    plan = anneal_plan(AnnealConfig(total_tokens=4096, lr=1.0), seq_len=256, global_batch_tokens=1024, dp=2)
    assert [step.lr for step in plan] == [1.0, 0.75, 0.5, 0.25]
    assert all(step.sequences == 4 for step in plan)


def test_batch_that_does_not_split_over_ranks_is_rejected():
    with pytest.raises(TrainingConfigError, match="multiple of seq_len 256 x dp 2"):
        anneal_plan(AnnealConfig(total_tokens=4096, lr=1.0), seq_len=256, global_batch_tokens=256, dp=2)


def test_checkpoint_steps_always_include_the_last():
    assert checkpoint_steps(25, 10) == [10, 20, 25]
    assert checkpoint_steps(20, 10) == [10, 20]
    assert checkpoint_steps(3, 10) == [3]
