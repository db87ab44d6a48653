"""Held-out losses of a fine-tuning job, measured by the training workers on the model as the
job's layout places it: the mean loss over the learned tokens of each held-out example set,
before the first step (step 0: the input model) and after the last. The driver reads them
(step_figures.py) and never loads a model.
"""
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .example_set import ExampleSet, example_batch
from .example_values import sharded_example_values
from .rank_eval import COUNTED, LOSS, local_sums, summed_over_ranks
from .rank_model import RankModel
from .step_figures import load_step_arrays, load_step_figures, publish_step_figures

HELD_OUT_FIGURES = "held-out"


@dataclass(frozen=True)
class HeldOutChecks:
    """What the workers measure, and when; picklable (it travels in the TrainingJob)."""

    sets: tuple[str, ...]  # example sets of the job's example-set directory
    steps: tuple[int, ...]  # completed-step counts; 0: the input model
    seq_len: int  # the longest packed row
    examples_per_forward: int = 16
    per_example: bool = False  # also publish each example's summed loss (arrays named after the sets)
    score_token: int | None = None  # per example, that token's logit at its end instead (no mean loss)


def held_out_losses(checkpoint_root: str, step: int) -> dict[str, float] | None:
    """{set: mean loss} published at `step`, or None."""
    figures = load_step_figures(checkpoint_root, HELD_OUT_FIGURES, step)
    return None if figures is None else figures["losses"]


def held_out_example_values(checkpoint_root: str, step: int) -> dict[str, np.ndarray] | None:
    """{set: [examples] each one's value (summed loss over its learned tokens, or score)}
    published at `step` by checks with per_example, or None."""
    return load_step_arrays(checkpoint_root, HELD_OUT_FIGURES, step)


def check_held_out(placed: RankModel, checks: HeldOutChecks | None, directory: Path, checkpoint_root: str,
                   step: int, rank: int, device: torch.device) -> None:
    """(Collective) measure and publish the held-out losses at `step` if it is one of the checks'
    steps and they are not published yet."""
    if checks is None or step not in checks.steps or held_out_losses(checkpoint_root, step) is not None:
        return
    if checks.per_example:
        sums = {name: sharded_example_values(placed, ExampleSet.open(directory, name), checks.seq_len,
                                             checks.examples_per_forward, device, checks.score_token)
                for name in checks.sets}
        scored = checks.score_token is not None
        losses = {} if scored else {name: float(loss.sum() / counted.sum()) for name, (loss, counted) in sums.items()}
        arrays = {name: values for name, (values, _) in sums.items()}
    else:
        losses = {name: sharded_mean_loss(placed, ExampleSet.open(directory, name), checks, device)
                  for name in checks.sets}
        arrays = {}
    if rank == 0:
        publish_step_figures(checkpoint_root, HELD_OUT_FIGURES, step, {"step": step, "losses": losses}, arrays)


def sharded_mean_loss(placed: RankModel, examples: ExampleSet, checks: HeldOutChecks, device: torch.device) -> float:
    """(Collective) the mean loss over the learned tokens of every example, the same on every rank.
    DP rank d takes examples d, d + dp, ...; every DP rank runs the same number of forwards (FSDP2
    gathers collectively), a rank short of examples filling up with a row that counts nothing.
    Each forward packs its examples into rows (a forward-only pipeline takes any rows)."""
    layout = placed.layout
    dp, dp_rank = layout.dp, placed.dp_rank
    mine = list(range(dp_rank, len(examples), dp))
    per_rank = math.ceil(len(examples) / dp)
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    for start in range(0, per_rank, checks.examples_per_forward):
        picked = [examples.example(i) for i in mine[start : start + checks.examples_per_forward]]
        batch = example_batch(picked or [None], layout.cp, layout.tp, row_tokens=checks.seq_len)
        sums += local_sums(placed, batch, device)
    total = summed_over_ranks(placed, sums)
    return float(total[LOSS] / total[COUNTED])
