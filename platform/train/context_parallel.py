"""Context parallelism the Llama 3 paper's way (section 3.3.2): all-gather keys and values.

The sequence is cut into 2 x cp chunks and cp rank i holds chunks i and 2 cp - 1 - i, so every
rank gets the same share of causal attention work (an early chunk attends to few keys, its
mirror to many). Each rank embeds and projects only its own tokens; in each layer it all-gathers
the rotated keys and values of the whole sequence over the "cp" mesh dimension (the backward
reduce-scatters their gradients) and puts them back in GLOBAL order (one index_select). Each local
query chunk j then attends only to the key prefix it can see, [0, (j + 1) x chunk), causal aligned
to the lower right (model/prefix_attention.py): no mask, and no scores for keys a mask would drop,
about half the attention FLOPs of attending to all T keys. With packed documents a chunk also
needs a same-document mask over its [chunk, prefix] only, which the kernel builds from the rows'
document ids in each layer's forward and again in its backward: nothing but the ids is held between
the two (a dense [T / cp, T] bool mask used to be held per micro-batch, and SDPA kept a float copy
of it per layer for backward). RoPE rotates each token at its global position (or its position
inside its document), as the unsharded model does.

The model stays parallelism-free: each attention layer takes an `attention_kernel` (this module's
`ContextParallelAttention`: gather + prefix attention; `RankChunks` says which keys each local
chunk sees) and the forward takes precomputed positions and the kernel's mask, here the rows'
[B, T] document ids or None: per-row tensors, so the pipeline schedule splits them into
microbatches like the tokens.
Parameters are replicated across cp ranks, which each see different tokens: parallelize() shards
them with FSDP2 over the dp x cp ranks together (as torchtitan does), whose gradient average
`cp_forward_loss` accounts for.
"""
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.distributed._functional_collectives as funcol
from torch.distributed.device_mesh import DeviceMesh

from llamaops.platform.model.prefix_attention import document_prefix_attention, prefix_causal_attention
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
class RankChunks:
    """The attention plan of one cp rank: which global chunks it holds and which keys each sees."""

    cp: int
    rank: int

    @property
    def chunks(self) -> tuple[int, int]:
        return self.rank, 2 * self.cp - 1 - self.rank

    def key_spans(self, chunk: int) -> tuple[int, int]:
        """Keys each local chunk attends to (a prefix of the global sequence), `chunk` tokens a chunk."""
        return tuple((j + 1) * chunk for j in self.chunks)


@dataclass(frozen=True)
class ContextShard:
    """One cp rank's part of a batch, ready for Transformer.forward."""

    tokens: torch.Tensor  # [B, T / cp]
    targets: torch.Tensor | None  # [B, T / cp]
    positions: torch.Tensor  # [B, T / cp] RoPE positions: global, or within each document
    # The whole rows' [B, T] document ids (None: plain causal rows): forward's attention_mask, which
    # ContextParallelAttention takes to mask each chunk's key prefix within documents.
    document_ids: torch.Tensor | None
    chunks: RankChunks

    @property
    def mask(self) -> torch.Tensor:
        """The dense [B or 1, 1, T / cp, T] bool mask of the local queries over the keys in gathered
        (rank) order, which attention used before the prefix kernel: a reference for tests and the
        benchmark; no training path builds it."""
        seq_len = self.tokens.shape[1] * self.chunks.cp
        local = local_token_index(seq_len, self.chunks.cp, self.chunks.rank).to(self.tokens.device)
        keys = gathered_token_index(seq_len, self.chunks.cp).to(self.tokens.device)
        mask = (keys.view(1, -1) <= local.view(-1, 1)).view(1, 1, local.numel(), seq_len)
        if self.document_ids is None:
            return mask
        same_document = self.document_ids[:, local].unsqueeze(-1) == self.document_ids[:, keys].unsqueeze(-2)
        return mask & same_document.unsqueeze(1)


def shard_context(
    tokens: torch.Tensor,
    targets: torch.Tensor | None,
    document_ids: torch.Tensor | None,
    cp: int,
    rank: int,
) -> ContextShard:
    """Rank `rank`'s tokens, targets and positions out of a [B, T] batch."""
    batch, seq_len = tokens.shape
    local = local_token_index(seq_len, cp, rank).to(tokens.device)
    if document_ids is None:
        positions = local.expand(batch, -1)
    else:
        positions = positions_within_documents(document_ids)[:, local]
    return ContextShard(
        tokens=tokens[:, local],
        targets=None if targets is None else targets[:, local],
        positions=positions,
        document_ids=document_ids,
        chunks=RankChunks(cp, rank),
    )


def gather_keys_values(keys: torch.Tensor, values: torch.Tensor, group) -> tuple[torch.Tensor, torch.Tensor]:
    """All-gather [B, H, T_local, D] keys and values along the sequence in one collective and put
    them in global token order; autograd reduce-scatters the gradients back to their owners."""
    both = torch.stack((keys, values)).movedim(3, 0).contiguous()  # [T_local, 2, B, H, D]: gather dim 0
    gathered = funcol.all_gather_single_autograd(both, gather_dim=0, group=group)
    gathered = funcol.wait_tensor(gathered) if isinstance(gathered, funcol.AsyncCollectiveTensor) else gathered
    cp = gathered.shape[0] // both.shape[0]
    in_global_order = gathered_token_index(gathered.shape[0], cp).argsort().to(gathered.device)
    keys, values = gathered.index_select(0, in_global_order).movedim(0, 3).unbind(0)
    return keys, values


class ContextParallelAttention:
    """The attention kernel context parallelism installs in every layer (a plain callable, so not
    a submodule): gather the keys and values, then each local chunk over its key prefix, within
    documents when given the rows' document ids."""

    def __init__(self, group: dist.ProcessGroup, chunks: RankChunks):
        self.group = group
        self.chunks = chunks

    def __call__(self, query, keys, values, document_ids: torch.Tensor | None) -> torch.Tensor:
        keys, values = gather_keys_values(keys, values, self.group)
        chunk = query.shape[2] // 2
        outputs = []
        for i, (j, span) in enumerate(zip(self.chunks.chunks, self.chunks.key_spans(chunk))):
            chunk_query = query[:, :, i * chunk : (i + 1) * chunk]
            prefix_keys, prefix_values = keys[:, :, :span], values[:, :, :span]
            if document_ids is None:
                outputs.append(prefix_causal_attention(chunk_query, prefix_keys, prefix_values))
            else:
                query_documents = document_ids[:, j * chunk : (j + 1) * chunk]
                outputs.append(document_prefix_attention(
                    chunk_query, prefix_keys, prefix_values, query_documents, document_ids[:, :span]
                ))
        return torch.cat(outputs, dim=2)


def apply_context_parallel(model: Transformer, cp_mesh: DeviceMesh) -> None:
    """Make every attention layer attend over the keys and values of all cp ranks. From then on the
    model must be called on cp-sharded batches: use `cp_forward_loss`."""
    kernel = ContextParallelAttention(cp_mesh.get_group(), RankChunks(cp_mesh.size(), cp_mesh.get_local_rank()))
    for block in model.layers.values():
        block.attention.attention_kernel = kernel


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
        shard.tokens, positions=shard.positions, attention_mask=shard.document_ids, targets=shard.targets,
        loss_reduction="sum",
    )
    counted = counted_in_step(shard.targets, mesh)
    share = weighted_sum(local_sum, cp_mesh.size() * dp_mesh.size(), counted)
    total = local_sum.detach().float().clone()
    for group_mesh in (cp_mesh, dp_mesh):
        if group_mesh.size() > 1:
            dist.all_reduce(total, group=group_mesh.get_group())
    return share + (total / counted - share).detach()
