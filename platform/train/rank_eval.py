"""Forward-only evaluation of the model as the training layout places it (rank_model.RankModel):
the summed loss, the counted targets and the argmax hits of a batch, under no_grad, for every
layout (FSDP2 over DP, TP with sequence parallelism, CP, PP 1F1B or interleaved), so that the
long-context gate (gate_checks.py) is measured by the training workers themselves.

Each rank computes the sums of its own tokens: its DP rank's rows, its CP rank's chunks of them;
TP ranks share a sum (the sequence-parallel loss adds up their shards) and only the last pipeline
stage has one. `summed_over_ranks` then adds one copy per DP x CP rank into figures identical on
every rank.

Pipeline stages run forward one after another, each handing its whole hidden states to the next
stage's rank (point to point over the "pp" mesh dimension), one batch at a time: no microbatch
overlap, which the gate's few windows do not need, and no constraint on the batch's rows.
"""
import torch
import torch.distributed as dist

from llamaops.platform.model.loss import IGNORE_INDEX

from .batches import Batch
from .parallelize import PARAM_DTYPES
from .pipeline import rank_stage_ids
from .rank_model import RankModel

# The sums' layout: [summed loss (nats), counted targets, counted targets that are the argmax].
LOSS, COUNTED, HITS = 0, 1, 2


@torch.no_grad()
def local_sums(placed: RankModel, batch: Batch, device: torch.device) -> torch.Tensor:
    """[loss, counted, hits] (fp64, so that sums over many windows and ranks stay exact to the
    last nat's digit) of this rank's share of `batch`; zeros on ranks whose sums another rank
    reports (TP ranks but the first, pipeline ranks without the last stage)."""
    inputs, targets, model_inputs = placed.rank_inputs(batch, device)
    loss_hits = _forward(placed, inputs, model_inputs, targets=targets, loss_reduction="sum", count_hits=True)
    if not reports(placed):
        return torch.zeros(3, dtype=torch.float64, device=device)
    counted = (targets != IGNORE_INDEX).sum(dtype=torch.float64)
    return torch.stack((loss_hits[0].double(), counted, loss_hits[1].double()))


@torch.no_grad()
def position_values(placed: RankModel, batch: Batch, device: torch.device,
                    score_token: int | None = None) -> torch.Tensor | None:
    """[rows, T] a value at each position of this rank's rows of `batch`: its next-token loss (0
    where not counted), or with `score_token` that token's logit; on the ranks that report (see
    local_sums), None on the others. Not under CP, whose ranks hold chunks of the rows."""
    if placed.layout.cp > 1:
        raise ValueError("per-position values are not implemented under context parallelism")
    inputs, targets, model_inputs = placed.rank_inputs(batch, device)
    if score_token is None:
        values = _forward(placed, inputs, model_inputs, targets=targets, loss_reduction="none")
    else:
        values = _forward(placed, inputs, model_inputs, score_token=score_token)
    return values if reports(placed) else None


def reports(placed: RankModel) -> bool:
    """Whether this rank's figures count: it holds the last stage, and is the first of its TP
    group (whose ranks compute the same figures)."""
    return placed.holds_last and (placed.mesh is None or placed.mesh["tp"].get_local_rank() == 0)


def _forward(placed: RankModel, inputs: torch.Tensor, model_inputs: dict, **head) -> torch.Tensor | None:
    if placed.stages is None:
        return placed.parts[0](inputs, **model_inputs, **head)
    return _pipeline_forward(placed, inputs, model_inputs, head)


def summed_over_ranks(placed: RankModel, sums: torch.Tensor) -> torch.Tensor:
    """`sums` (from local_sums, any shape) added up over the world: every rank gets the total."""
    if placed.mesh is None:
        return sums
    total = sums.clone()
    dist.all_reduce(total)
    return total


def _pipeline_forward(placed: RankModel, inputs: torch.Tensor, model_inputs: dict, head: dict):
    """This rank's stages run in stage order on the whole batch, each with `head` (the loss's
    arguments, which only the last stage uses); returns the last stage's output (None on a rank
    without it). Consecutive stages sit on consecutive pp ranks, so
    each receive below matches the previous stage's send."""
    layout = placed.layout
    pp_mesh = placed.mesh["pp"]
    group, pp = pp_mesh.get_group(), layout.pp
    last = pp * layout.pp_stages_per_rank - 1
    # What a stage hands on: [rows, this rank's tokens, dim], in the dtype FSDP2 computes in.
    dtype = PARAM_DTYPES[layout.param_dtype]
    hidden, output = inputs, None
    for part, stage in zip(placed.parts, rank_stage_ids(layout, pp_mesh.get_local_rank())):
        if stage > 0:
            hidden = torch.empty((*inputs.shape, part.cfg.dim), dtype=dtype, device=inputs.device)
            dist.recv(hidden, group=group, group_src=(stage - 1) % pp)
        output = part(hidden, **model_inputs, **head)
        if stage < last:
            dist.send(output.contiguous(), group=group, group_dst=(stage + 1) % pp)
    return output if placed.holds_last else None
