"""What every optimizer step does, decided before training: sequence length, batch and LR.

A plan is a pure function of the config, so every worker and every resumed run agrees on it, and
a checkpoint only needs the step number to know where the schedule stands.
"""
import math
from collections.abc import Sequence
from dataclasses import dataclass

from llamaops.platform.config.stages import (
    AnnealConfig,
    BatchRampStep,
    LongContextConfig,
    Optimizer,
    PretrainConfig,
)

from .errors import TrainingConfigError


@dataclass(frozen=True)
class StepPlan:
    seq_len: int
    sequences: int  # global batch, in sequences of seq_len tokens, across all data-parallel ranks
    lr: float

    @property
    def tokens(self) -> int:
        return self.seq_len * self.sequences


def learning_rate(optimizer: Optimizer, step: int) -> float:
    """LR of 0-based `step`: linear warmup to the peak, then cosine or linear decay to the floor."""
    if step < optimizer.warmup_steps:
        return optimizer.peak_lr * (step + 1) / optimizer.warmup_steps
    progress = min((step - optimizer.warmup_steps) / optimizer.decay_steps, 1.0)
    if optimizer.decay == "cosine":
        fraction = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        fraction = 1.0 - progress
    return optimizer.min_lr + (optimizer.peak_lr - optimizer.min_lr) * fraction


def ramp_step(ramp: list[BatchRampStep], tokens_seen: int) -> BatchRampStep:
    """The batch-ramp entry in force once `tokens_seen` tokens have been trained on."""
    return [entry for entry in ramp if entry.after_tokens <= tokens_seen][-1]


def sequences_per_step(global_batch_tokens: int, seq_len: int, dp: int, where: str) -> int:
    """Sequences in a global batch; it must split evenly over the data-parallel ranks."""
    sequences = global_batch_tokens // seq_len
    if global_batch_tokens % seq_len or sequences % dp:
        raise TrainingConfigError(
            f"{where}: global_batch_tokens {global_batch_tokens} must be a multiple of seq_len {seq_len}"
            f" x dp {dp} = {seq_len * dp}"
        )
    return sequences


def pretrain_plan(cfg: PretrainConfig) -> list[StepPlan]:
    plan: list[StepPlan] = []
    tokens = 0
    while tokens < cfg.total_tokens:
        entry = ramp_step(cfg.batch_ramp, tokens)
        sequences = sequences_per_step(entry.global_batch_tokens, entry.seq_len, cfg.layout.dp, "pretrain.batch_ramp")
        step = StepPlan(entry.seq_len, sequences, learning_rate(cfg.optimizer, len(plan)))
        plan.append(step)
        tokens += step.tokens
    return plan


@dataclass(frozen=True)
class ContextStage:
    """One long-context length's steps in the plan: its share, then any extra steps the
    short-context gate asked for (recorded with the checkpoints, so the plan is reproducible)."""

    seq_len: int
    first_step: int  # completed steps before the stage starts
    base_steps: int
    extra_steps: int = 0

    @property
    def end(self) -> int:
        """Completed steps once the stage is done: where its gate check runs."""
        return self.first_step + self.base_steps + self.extra_steps


def long_context_stages(cfg: LongContextConfig, extra_steps: Sequence[int] = ()) -> list[ContextStage]:
    """An equal share of the tokens at each length in turn, plus `extra_steps[i]` more at length i."""
    share = cfg.total_tokens / len(cfg.seq_lens)
    stages: list[ContextStage] = []
    for index, seq_len in enumerate(cfg.seq_lens):
        steps = max(1, math.ceil(share / (stage_sequences(cfg, seq_len) * seq_len)))
        extra = extra_steps[index] if index < len(extra_steps) else 0
        stages.append(ContextStage(seq_len, stages[-1].end if stages else 0, steps, extra))
    return stages


def stage_sequences(cfg: LongContextConfig, seq_len: int) -> int:
    """Sequences per step at a context stage's `seq_len`: the most whole sequences within
    `global_batch_tokens` that split evenly over the DP ranks and, under PP, over each rank's
    microbatches. The paper's 48K and 96K stages (3 x 2^k) divide no power-of-two batch, so their
    batch is the nearest below it (16M tokens: 320 x 48K over DP 4 x 16 microbatches)."""
    layout = cfg.layout
    split = layout.dp * (layout.pp_microbatches if layout.pp > 1 else 1)
    sequences = cfg.global_batch_tokens // seq_len // split * split
    if not sequences:
        raise TrainingConfigError(
            f"long_context: global_batch_tokens {cfg.global_batch_tokens} holds fewer than dp x microbatches = {split}"
            f" sequences of {seq_len} tokens; raise it to at least {split * seq_len}"
        )
    return sequences


def long_context_plan(cfg: LongContextConfig, extra_steps: Sequence[int] = ()) -> list[StepPlan]:
    """The stages' steps in turn, at a constant LR."""
    plan: list[StepPlan] = []
    for stage in long_context_stages(cfg, extra_steps):
        sequences = stage_sequences(cfg, stage.seq_len)
        plan += [StepPlan(stage.seq_len, sequences, cfg.lr)] * (stage.base_steps + stage.extra_steps)
    return plan


def anneal_plan(cfg: AnnealConfig, seq_len: int, global_batch_tokens: int, dp: int) -> list[StepPlan]:
    """LR falling linearly from cfg.lr so that it reaches 0 as the last token is trained on."""
    sequences = sequences_per_step(global_batch_tokens, seq_len, dp, "anneal")
    steps = max(1, math.ceil(cfg.total_tokens / global_batch_tokens))
    return [StepPlan(seq_len, sequences, cfg.lr * (steps - step) / steps) for step in range(steps)]


def checkpoint_steps(total_steps: int, every: int) -> list[int]:
    """Completed-step counts after which a checkpoint is written; always the last step."""
    return sorted({*range(every, total_steps + 1, every), total_steps})
