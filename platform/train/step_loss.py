"""A step's loss: the mean over every counted target of the global batch, however the batch is
split (DP ranks, CP chunks, pipeline microbatches), so that every layout trains the same model.

Each piece of the batch computes the SUM of its targets' losses and weighs it by
`averaged_ranks / counted_in_step`: FSDP2 averages gradients over the dp (x cp) ranks, so that
factor turns the average back into the sum, and the division by the step's count makes it the
mean. Summing before dividing also keeps a piece with no counted target (a padded microbatch, a
CP chunk of ignored positions) at zero instead of the 0 / 0 a per-piece mean would give.
"""
import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh

from llamaops.platform.model.loss import IGNORE_INDEX


def counted_in_step(targets: torch.Tensor, mesh: DeviceMesh | None) -> torch.Tensor:
    """The counted targets of the whole step (fp32, at least 1), from this rank's share of them:
    summed over the dp and cp ranks, which hold different tokens (tp and pp ranks the same ones)."""
    total = (targets != IGNORE_INDEX).sum(dtype=torch.float32)
    if mesh is not None:
        for dim in ("dp", "cp"):
            if mesh[dim].size() > 1:
                dist.all_reduce(total, group=mesh[dim].get_group())
    return total.clamp_min(1.0)  # a step without a counted target trains on nothing, not on NaN


def weighted_sum(loss_sum: torch.Tensor, averaged_ranks: int, counted: torch.Tensor) -> torch.Tensor:
    """The share of the step's mean loss whose gradient, averaged over `averaged_ranks` by FSDP2,
    is that of the mean: the piece's summed loss x averaged_ranks / the step's counted targets."""
    return loss_sum * (averaged_ranks / counted)
