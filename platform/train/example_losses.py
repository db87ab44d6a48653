"""Each example's summed next-token loss (minus its log-probability) over its learned tokens, on
the model as the training layout places it, without autograd: what DPO's two passes and its
reference (preference_step.py) and the preference held-out figures need.

The reporting ranks (rank_eval.reports: the last stage's, one per TP group) add each position's
loss into its example's slot of a vector as long as the examples measured; one all-reduce over
the world then gives every rank the whole vector, each slot filled by the one DP rank that held
its example. Not under context parallelism, whose ranks hold chunks of rows.
"""
import math

import numpy as np
import torch
import torch.distributed as dist

from llamaops.platform.model.loss import IGNORE_INDEX

from .batches import Batch
from .example_set import ExampleSet, example_batch
from .rank_eval import reports, token_losses
from .rank_model import RankModel


def step_example_losses(placed: RankModel, batch: Batch, offset: int, total: int,
                        device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(Collective) ([total] summed losses, [total] counted targets), fp64 on the CPU, of a step's
    examples, this rank's `batch` holding those from `offset` on."""
    sums = torch.zeros(2, total, dtype=torch.float64, device=device)
    _add_batch(placed, batch, torch.arange(offset, offset + int(batch.example_index.max()) + 1), sums, device)
    return tuple(_summed(placed, sums).cpu())  # type: ignore[return-value]


def sharded_example_losses(placed: RankModel, examples: ExampleSet, row_tokens: int, per_forward: int,
                           device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """(Collective) ([N] summed losses, [N] counted targets) of every example of the set. DP rank
    d takes examples d, d + dp, ..., `per_forward` at a time packed into rows of `row_tokens`;
    every DP rank runs the same number of forwards (FSDP2 gathers collectively)."""
    dp, dp_rank = placed.layout.dp, placed.dp_rank
    mine = list(range(dp_rank, len(examples), dp))
    sums = torch.zeros(2, len(examples), dtype=torch.float64, device=device)
    for start in range(0, math.ceil(len(examples) / dp), per_forward):
        picked = mine[start : start + per_forward]
        batch = example_batch([examples.example(i) for i in picked] or [None], placed.layout.cp, placed.layout.tp,
                              row_tokens=row_tokens)
        _add_batch(placed, batch, torch.tensor(picked, dtype=torch.long), sums, device)
    losses, counted = _summed(placed, sums).cpu().numpy()
    return losses, counted


def _add_batch(placed: RankModel, batch: Batch, slots: torch.Tensor, sums: torch.Tensor, device: torch.device) -> None:
    """Add `batch`'s per-example sums into `sums` [2, N] at `slots` (its examples' places)."""
    losses = token_losses(placed, batch, device)
    if losses is None or not len(slots):
        return
    index = batch.example_index.to(device)
    held = index >= 0
    where = slots.to(device)[index[held]]
    sums[0].index_add_(0, where, losses[held].double())
    sums[1].index_add_(0, where, (batch.targets.to(device)[held] != IGNORE_INDEX).double())


def _summed(placed: RankModel, sums: torch.Tensor) -> torch.Tensor:
    if placed.mesh is not None:
        dist.all_reduce(sums)
    return sums
