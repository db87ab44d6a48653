"""The long-context gate's figures, measured by the training workers on the model as the stage's
layout places it (rank_eval.py), so no process ever holds the whole model for the gate.

At each of the job's gate steps (0: the input model, before the first step; k: right after step
k's checkpoint) the workers compute, under no_grad:
- the short-context loss: the mean next-token loss over the validation windows that the
  eval stage picks (`eval.perplexity.window_indices` (the same choice, every target
  counted), the windows split over the DP ranks;
- (steps > 0, when needles are configured) the needles found at the length of the step just
  trained, teacher-forced: see `needle_found_sums`.
Rank 0 publishes them at `<checkpoint root>/gate-checks/step-<k>` (step_figures.py). The driver (long_context.py) reads them and decides. So that passing stages need no new
worker group, the workers apply the same verdict at each stage end and end the run only where a
stage failed (every rank alike: the figures are summed over the ranks).
"""
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from llamaops.platform.data.shards import TokenStream
from llamaops.platform.eval.needle import needle_cases
from llamaops.platform.eval.perplexity import open_validation, window_indices, window_rows
from llamaops.platform.model.loss import IGNORE_INDEX

from . import step_figures
from .batches import Batch
from .rank_eval import COUNTED, HITS, LOSS, local_sums, summed_over_ranks
from .rank_model import RankModel
from .step_figures import load_step_figures, publish_step_figures

GATE_FIGURES = "gate-checks"


@dataclass(frozen=True)
class GateVerdict:
    """When a stage passes: its short-context loss back within `max_loss_increase` of the input
    model's and, if required, every needle found. The one rule for the workers and the driver."""

    max_loss_increase: float | None  # None: any loss passes
    needle_must_pass: bool = False

    def passes(self, figures: dict, baseline_loss: float) -> bool:
        recovered = self.max_loss_increase is None or figures["short_loss"] - baseline_loss <= self.max_loss_increase
        needles_ok = not self.needle_must_pass or figures.get("needle_accuracy") in (None, 1.0)
        return recovered and needles_ok


@dataclass(frozen=True)
class GateChecks:
    """What the workers measure for the gate, and when; picklable (it travels in the TrainingJob)."""

    steps: tuple[int, ...]  # completed-step counts; 0: the input model
    seq_len: int  # the short context
    windows: int
    batch_size: int  # windows per forward
    needle_depths: tuple[float, ...] = ()
    needle_max_new_tokens: int = 0  # the reply room a needle prompt leaves (see needle_prompt_len)
    stop_steps: tuple[int, ...] = ()  # stage ends where the run ends unless the stage passed `verdict`
    verdict: GateVerdict | None = None
    baseline_loss: float | None = None  # the input model's short loss; None: measured at step 0 of this job


def needle_prompt_len(seq_len: int, max_new_tokens: int) -> int:
    """A needle prompt's tokens at length `seq_len`: room left for the chat format and the reply."""
    return seq_len - max_new_tokens - 64


def figures_uri(checkpoint_root: str, step: int) -> str:
    return step_figures.figures_uri(checkpoint_root, GATE_FIGURES, step)


def load_figures(checkpoint_root: str, step: int) -> dict | None:
    """{"step", "short_loss", "needle_accuracy" (None: not run)} measured at `step`, if published."""
    return load_step_figures(checkpoint_root, GATE_FIGURES, step)


def check_at_step(
    placed: RankModel, gate: GateChecks | None, checkpoint_root: str, data_dir: Path, step: int, seq_len: int,
    rank: int, device: torch.device,
) -> dict | None:
    """(Collective) measure and publish the gate's figures at `step` if it is a gate step and they
    are not published yet (else read them); `seq_len` is the length of the step just trained (the
    needles'). Returns the figures, None at a step that is not a gate step."""
    if gate is None or step not in gate.steps:
        return None
    published = load_figures(checkpoint_root, step)
    if published is not None:
        return published
    stream = open_validation(data_dir, gate.seq_len)
    figures = {"step": step, "short_loss": sharded_short_context_loss(placed, stream, gate, device), "needle_accuracy": None}
    if step > 0 and gate.needle_depths:
        figures["needle_accuracy"] = teacher_forced_needle_accuracy(placed, gate, seq_len, device)
    if rank == 0:
        publish_step_figures(checkpoint_root, GATE_FIGURES, step, figures)
    return figures


def verdict_baseline(gate: GateChecks | None, checkpoint_root: str, first_figures: dict | None) -> float | None:
    """The input model's short loss a worker's stage verdicts compare with: the driver's, the step-0
    figures this worker group measured first (`first_figures`), or those an earlier group published.
    None where the job gives no verdicts."""
    if gate is None or gate.verdict is None or not gate.stop_steps:
        return None
    if gate.baseline_loss is not None:
        return gate.baseline_loss
    if first_figures is not None and first_figures["step"] == 0:
        return first_figures["short_loss"]
    published = load_figures(checkpoint_root, 0)
    return published["short_loss"] if published else None


def stage_failed(gate: GateChecks | None, figures: dict | None, baseline_loss: float | None) -> bool:
    """Whether the run ends at these figures' step: a stage end whose figures fail the verdict."""
    if gate is None or gate.verdict is None or figures is None or figures["step"] not in gate.stop_steps:
        return False
    if baseline_loss is None:
        raise ValueError(f"the gate at step {figures['step']} has no baseline: step 0 was not measured")
    return not gate.verdict.passes(figures, baseline_loss)


def sharded_short_context_loss(placed: RankModel, stream: TokenStream, gate: GateChecks, device: torch.device) -> float:
    """(Collective) the mean next-token loss over the gate's validation windows, the same on every
    rank. DP rank d takes windows d, d + dp, ...; every DP rank runs the same number of forwards
    (FSDP2 gathers collectively), a rank short of windows filling up with rows that count nothing."""
    indices = window_indices(stream.num_windows(gate.seq_len), gate.windows)
    dp, dp_rank = placed.layout.dp, placed.dp_rank
    mine, per_rank = indices[dp_rank::dp], math.ceil(len(indices) / dp)
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    for start in range(0, per_rank, gate.batch_size):
        rows = min(gate.batch_size, per_rank - start)
        picked = mine[start : start + rows]
        tokens, documents = window_rows(stream, picked + [indices[0]] * (rows - len(picked)), gate.seq_len)
        targets = tokens[:, 1:].clone()
        targets[len(picked) :] = IGNORE_INDEX
        sums += local_sums(placed, Batch(tokens[:, :-1], targets, documents[:, :-1]), device)
    total = summed_over_ranks(placed, sums)
    return float(total[LOSS] / total[COUNTED])


def teacher_forced_row(prompt: list[int], reply: list[int], seq_len: int) -> Batch:
    """One row of `seq_len` inputs: the prompt, then the expected reply, then padding; only the
    reply's tokens are targets (right padding changes nothing before it: attention is causal)."""
    tokens = prompt + reply
    if len(tokens) > seq_len + 1:
        raise ValueError(f"a prompt of {len(prompt)} and a reply of {len(reply)} tokens exceed {seq_len + 1}")
    padded = torch.tensor(tokens + [0] * (seq_len + 1 - len(tokens))).unsqueeze(0)
    targets = torch.full((1, seq_len), IGNORE_INDEX)
    targets[0, len(prompt) - 1 : len(tokens) - 1] = padded[0, len(prompt) : len(tokens)]
    return Batch(padded[:, :-1], targets, torch.zeros(1, seq_len, dtype=torch.long))


def needle_found_sums(placed: RankModel, cases: list[tuple[list[int], list[int]]], seq_len: int,
                      device: torch.device) -> torch.Tensor:
    """(Collective) [cases, 3] sums of each (prompt, expected reply) case, teacher-forced: greedy
    decoding after the prompt produces the reply's tokens first iff at every reply position the
    argmax logit is that token, given the prompt and the reply before it. So a case is found
    (hits == counted) exactly when greedy decoding would begin its reply with them. DP rank d
    takes cases d, d + dp, ...; the others' rows fill up with rows that count nothing."""
    dp, dp_rank = placed.layout.dp, placed.dp_rank
    sums = torch.zeros(len(cases), 3, dtype=torch.float64, device=device)
    for index in range(dp_rank, math.ceil(len(cases) / dp) * dp, dp):
        prompt, reply = cases[index % len(cases)]
        row = teacher_forced_row(prompt, reply, seq_len)
        if index >= len(cases):
            row.targets.fill_(IGNORE_INDEX)
        sums[index % len(cases)] += local_sums(placed, row, device)
    return summed_over_ranks(placed, sums)


def teacher_forced_needle_accuracy(placed: RankModel, gate: GateChecks, seq_len: int, device: torch.device) -> float:
    """(Collective) the share of the needle cases at length `seq_len` (eval/needle.py's prompts)
    whose secret number greedy decoding would give first, right after the assistant header:
    stricter than eval/needle.py's judge, which accepts the number anywhere in the reply."""
    from llamaops.platform.tokenizer import Message, encode_dialog_for_generation, load_tokenizer

    tokenizer = load_tokenizer()
    cases = [
        (encode_dialog_for_generation([Message("user", case.prompt)], tokenizer), tokenizer.encode(case.secret))
        for case in needle_cases(tokenizer, [needle_prompt_len(seq_len, gate.needle_max_new_tokens)], gate.needle_depths)
    ]
    sums = needle_found_sums(placed, cases, seq_len, device)
    found = (sums[:, HITS] == sums[:, COUNTED]) & (sums[:, COUNTED] > 0)
    return float(found.sum()) / len(cases)
