"""Context parallelism the Llama 3 paper's way (section 3.3.2): all-gather keys and values.

The sequence is cut into 2 x cp chunks and cp rank i holds chunks i and 2 cp - 1 - i, so every
rank gets the same share of causal attention work (an early chunk attends to few keys, its
mirror to many). Each rank embeds and projects only its own tokens; in each layer it all-gathers
the rotated keys and values of the whole sequence over the "cp" mesh dimension (the backward
reduce-scatters their gradients) and attends with its local queries under a mask built from
GLOBAL token indices: causal, and within a document for packed sequences. RoPE rotates each
token at its global position (or its position inside its document), as the unsharded model does.
The gathered keys stay in rank order (rank 0's two chunks, then rank 1's, ...): attention does
not care about key order once the mask says which keys each query sees.

The model stays parallelism-free: it offers a generic per-layer `key_value_hook` and a forward
that takes precomputed positions and mask; this module fills them in. Parameters are replicated
across cp ranks, which each see different tokens: parallelize() shards them with FSDP2 over the
dp x cp ranks together (as torchtitan does), whose gradient average `cp_forward_loss` accounts for.
"""
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.distributed._functional_collectives as funcol
from torch.distributed.device_mesh import DeviceMesh

from llamaops.platform.model.transformer import Transformer, positions_within_documents

from .step_loss import counted_in_step, weighted_sum


class ContextParallelError(ValueError):
    """The batch cannot be split over the context-parallel ranks."""


def check_seq_len(seq_len: int, cp: int, tp: int = 1) -> None:
    """Refuse, in one line, a sequence length the layout cannot split: 2 x cp chunks, and each cp
    rank's tokens again over the tp ranks (sequence parallel). For a preflight before any step."""
    if seq_len % (2 * cp * tp):
        raise ContextParallelError(
            f"sequence length {seq_len} is not divisible by 2 x cp x tp = {2 * cp * tp}; pick a seq_len that is"
        )


def local_token_index(seq_len: int, cp: int, rank: int) -> torch.Tensor:
    """Global indices of the tokens cp rank `rank` holds: chunks rank and 2 cp - 1 - rank."""
    check_seq_len(seq_len, cp)
    chunk = seq_len // (2 * cp)
    mirror = 2 * cp - 1 - rank
    return torch.cat((torch.arange(rank * chunk, (rank + 1) * chunk), torch.arange(mirror * chunk, (mirror + 1) * chunk)))


def gathered_token_index(seq_len: int, cp: int) -> torch.Tensor:
    """Global indices of the keys after the all-gather, in its (rank) order."""
    return torch.cat([local_token_index(seq_len, cp, rank) for rank in range(cp)])


@dataclass(frozen=True)
class ContextShard:
    """One cp rank's part of a batch, ready for Transformer.forward."""

    tokens: torch.Tensor  # [B, T / cp]
    targets: torch.Tensor | None  # [B, T / cp]
    positions: torch.Tensor  # [B, T / cp] RoPE positions: global, or within each document
    mask: torch.Tensor  # [B or 1, 1, T / cp, T] bool: local queries x gathered keys


def shard_context(
    tokens: torch.Tensor,
    targets: torch.Tensor | None,
    document_ids: torch.Tensor | None,
    cp: int,
    rank: int,
) -> ContextShard:
    """Rank `rank`'s tokens, targets, positions and attention mask out of a [B, T] batch."""
    batch, seq_len = tokens.shape
    device = tokens.device
    local = local_token_index(seq_len, cp, rank).to(device)
    keys = gathered_token_index(seq_len, cp).to(device)
    mask = (keys.view(1, -1) <= local.view(-1, 1)).view(1, 1, local.numel(), seq_len)
    if document_ids is None:
        positions = local.expand(batch, -1)
    else:
        positions = positions_within_documents(document_ids)[:, local]
        same_document = document_ids[:, local].unsqueeze(-1) == document_ids[:, keys].unsqueeze(-2)
        mask = mask & same_document.unsqueeze(1)
    return ContextShard(
        tokens=tokens[:, local],
        targets=None if targets is None else targets[:, local],
        positions=positions,
        mask=mask,
    )


def gather_keys_values(keys: torch.Tensor, values: torch.Tensor, group) -> tuple[torch.Tensor, torch.Tensor]:
    """All-gather [B, H, T_local, D] keys and values along the sequence in one collective, rank
    order; autograd reduce-scatters the gradients back to their owners."""
    both = torch.stack((keys, values)).movedim(3, 0).contiguous()  # [T_local, 2, B, H, D]: gather dim 0
    gathered = funcol.all_gather_single_autograd(both, gather_dim=0, group=group)
    gathered = funcol.wait_tensor(gathered) if isinstance(gathered, funcol.AsyncCollectiveTensor) else gathered
    keys, values = gathered.movedim(0, 3).unbind(0)
    return keys, values


class _KeyValueGather:
    """The attention hook context parallelism installs: a plain callable, so not a submodule."""

    def __init__(self, group: dist.ProcessGroup):
        self.group = group

    def __call__(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return gather_keys_values(keys, values, self.group)


def apply_context_parallel(model: Transformer, cp_mesh: DeviceMesh) -> None:
    """Make every attention layer attend over the keys and values of all cp ranks. From then on the
    model must be called on cp-sharded batches: use `cp_forward_loss`."""
    hook = _KeyValueGather(cp_mesh.get_group())
    for block in model.layers.values():
        block.attention.key_value_hook = hook


def cp_forward_loss(
    model: Transformer,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    document_ids: torch.Tensor | None,
    mesh: DeviceMesh,
) -> torch.Tensor:
    """The training loss of a context-parallel model (parallelize() with layout.cp > 1).

    inputs, targets, document_ids: this data-parallel rank's whole [B, T] batch (every cp rank of
    a dp group passes the same one); `mesh` is build_mesh's (dims "dp" and "cp"). Each cp rank
    computes the summed loss of its own tokens. The returned value is the mean over every counted
    target of the dp x cp ranks' batches (the same on every rank), i.e. what the unsharded model
    returns for the concatenated batch; its gradient is this rank's sum scaled so that FSDP's
    average over the dp x cp ranks gives the gradient of that mean.
    """
    cp_mesh, dp_mesh = mesh["cp"], mesh["dp"]
    shard = shard_context(inputs, targets, document_ids, cp_mesh.size(), cp_mesh.get_local_rank())
    local_sum = model(
        shard.tokens, positions=shard.positions, attention_mask=shard.mask, targets=shard.targets,
        loss_reduction="sum",
    )
    counted = counted_in_step(shard.targets, mesh)
    share = weighted_sum(local_sum, cp_mesh.size() * dp_mesh.size(), counted)
    total = local_sum.detach().float().clone()
    for group_mesh in (cp_mesh, dp_mesh):
        if group_mesh.size() > 1:
            dist.all_reduce(total, group=group_mesh.get_group())
    return share + (total / counted - share).detach()
