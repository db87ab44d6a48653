"""One value per example, on the model as the training layout places it, without autograd: its
summed next-token loss over its learned tokens (minus its log-probability), or with a score token
that token's logit at the example's last position (the reward model's score). What the pairwise
objectives' first pass (preference_step.py), DPO's reference and their held-out figures need.

The reporting ranks (rank_eval.reports: the last stage's, one per TP group) add each position's
value into its example's slot of a vector as long as the examples measured; one all-reduce over
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
from .pipeline import step_microbatches
from .rank_eval import position_values
from .rank_model import RankModel


def step_example_values(placed: RankModel, batch: Batch, offset: int, total: int, device: torch.device,
                        score_token: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(Collective) ([total] values, [total] positions counted in each), fp64 on the CPU, of a
    step's examples, this rank's `batch` holding those from `offset` on."""
    sums = torch.zeros(2, total, dtype=torch.float64, device=device)
    slots = torch.arange(offset, offset + int(batch.example_index.max()) + 1)
    for rows in _microbatches(placed, batch):
        _add_batch(placed, rows, slots, sums, device, score_token)
    return tuple(_summed(placed, sums).cpu())  # type: ignore[return-value]


def _microbatches(placed: RankModel, batch: Batch) -> list[Batch]:
    """The batch as the training pass splits it (its pipeline microbatches, or its gradient
    accumulation passes), so that no forward holds more rows' activations than training does."""
    layout, rows = placed.layout, batch.inputs.shape[0]
    count = step_microbatches(layout, rows) if layout.pp > 1 else min(layout.accumulation_steps, rows)
    tensors = (batch.inputs, batch.targets, batch.document_ids, batch.example_index)
    return [Batch(*(torch.tensor_split(t, count)[index] for t in tensors)) for index in range(count)]


def sharded_example_values(placed: RankModel, examples: ExampleSet, row_tokens: int, per_forward: int,
                           device: torch.device, score_token: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(Collective) ([N] values, [N] positions counted in each) of every example of the set. DP
    rank d takes examples d, d + dp, ..., `per_forward` at a time packed into rows of `row_tokens`;
    every DP rank runs the same number of forwards (FSDP2 gathers collectively)."""
    dp, dp_rank = placed.layout.dp, placed.dp_rank
    mine = list(range(dp_rank, len(examples), dp))
    sums = torch.zeros(2, len(examples), dtype=torch.float64, device=device)
    for start in range(0, math.ceil(len(examples) / dp), per_forward):
        picked = mine[start : start + per_forward]
        batch = example_batch([examples.example(i) for i in picked] or [None], placed.layout.cp, placed.layout.tp,
                              row_tokens=row_tokens)
        _add_batch(placed, batch, torch.tensor(picked, dtype=torch.long), sums, device, score_token)
    values, counted = _summed(placed, sums).cpu().numpy()
    return values, counted


def counted_positions(batch: Batch, score_token: int | None) -> torch.Tensor:
    """[rows, T] the positions an example's value is made of: its learned next tokens, or with a
    score token its last position alone."""
    index = batch.example_index
    if score_token is None:
        return (index >= 0) & (batch.targets != IGNORE_INDEX)
    following = torch.full_like(index, -1)
    following[:, :-1] = index[:, 1:]
    return (index >= 0) & (following != index)


def _add_batch(placed: RankModel, batch: Batch, slots: torch.Tensor, sums: torch.Tensor, device: torch.device,
               score_token: int | None) -> None:
    """Add `batch`'s per-example values into `sums` [2, N] at `slots` (its examples' places)."""
    values = position_values(placed, batch, device, score_token)
    if values is None or not len(slots):
        return
    counted = counted_positions(batch, score_token).to(device)
    where = slots.to(device)[batch.example_index.to(device)[counted]]
    sums[0].index_add_(0, where, values[counted].double())
    sums[1].index_add_(0, where, torch.ones_like(where, dtype=torch.float64))


def _summed(placed: RankModel, sums: torch.Tensor) -> torch.Tensor:
    if placed.mesh is not None:
        dist.all_reduce(sums)
    return sums
