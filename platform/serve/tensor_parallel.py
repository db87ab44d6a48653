"""Tensor parallelism for generation: Megatron's split of every block over a group of ranks.

A rank holds a contiguous share of the attention heads (wq, wk, wv by rows, wo by columns) and of
the feed-forward's hidden units (w1, w3 by rows, w2 by columns); the two row-parallel projections
(wo, w2) end in an all-reduce, so every rank's residual stream is the whole model's. The output
projection is split by vocabulary rows (ShardedOutputHead gathers the logits); the embedding and
the norms are replicated (at 405B the embedding is 4.2 GB in bf16 of a 55 GB share at TP 16).
With more ranks than key/value heads, each rank keeps the one head its queries read.

Each rank reads only its boxes of each tensor out of the model directory (model/checkpoint.py
weight_slices), never the whole model. Plain tensors, no DTensor: a decode step runs a few
hundred small matmuls, and the ranks stay in step because every one of them runs the same engine
on the same requests and draws the same tokens from the same gathered logits.
"""
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from llamaops.platform.config.model import ModelConfig
from llamaops.platform.model.checkpoint import weight_slices
from llamaops.platform.model.precision import cpu_compute_dtype
from llamaops.platform.model.transformer import Transformer

from .fp8 import Fp8Linear, is_fp8_module
from .head import OutputHead

ROW_SPLIT = ("attention.wq", "attention.wk", "attention.wv", "feed_forward.w1", "feed_forward.w3")
COLUMN_SPLIT = ("attention.wo", "feed_forward.w2")
KV_SPLIT = ("attention.wk", "attention.wv")


class TensorParallelError(ValueError):
    """The model cannot be split over the group as asked."""


@dataclass(frozen=True)
class TensorParallelGroup:
    rank: int  # within the group
    size: int
    group: dist.ProcessGroup | None  # None when size is 1

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.size > 1:
            dist.all_reduce(tensor, group=self.group)
        return tensor


def check_splits(cfg: ModelConfig, tp: int) -> None:
    """Every split is whole: query heads, hidden units and vocabulary rows; key/value heads are
    split, or with more ranks than heads replicated (each rank keeps the one its queries use)."""
    for what, count in (("n_heads", cfg.n_heads), ("ffn_hidden_dim", cfg.ffn_hidden_dim),
                        ("vocab_size", cfg.vocab_size)):
        if count % tp:
            raise TensorParallelError(f"tensor parallel {tp} does not divide the model's {what} {count}; "
                                      f"choose a TP that divides it")
    if cfg.n_kv_heads % tp and tp % cfg.n_kv_heads:
        raise TensorParallelError(f"tensor parallel {tp} neither divides nor is a multiple of the model's "
                                  f"n_kv_heads {cfg.n_kv_heads}; choose a TP that is")


def shard_box(name: str, shape: torch.Size, rank: int, tp: int, cfg: ModelConfig) -> tuple[slice, ...]:
    """The box of tensor `name` (whole shape `shape`) that TP rank `rank` of `tp` holds."""
    whole = tuple(slice(0, n) for n in shape)
    module = name.rsplit(".", 1)[0]
    if module.endswith(KV_SPLIT) and tp > cfg.n_kv_heads:  # the key/value head of this rank's queries
        head = rank * cfg.n_kv_heads // tp
        return (slice(head * cfg.head_dim, (head + 1) * cfg.head_dim), *whole[1:])
    if module.endswith(ROW_SPLIT) or module == "output":
        rows = shape[0] // tp
        return (slice(rank * rows, (rank + 1) * rows), *whole[1:])
    if module.endswith(COLUMN_SPLIT):
        columns = shape[1] // tp
        return (whole[0], slice(rank * columns, (rank + 1) * columns))
    return whole


class RowParallelLinear(nn.Module):
    """y = x_shard @ W_shard^T summed over the group: the input arrives split by features."""

    def __init__(self, weight: torch.Tensor, group: TensorParallelGroup) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.tp = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tp.all_reduce(F.linear(x, self.weight))


class ShardedOutputHead(OutputHead):
    """The output projection split by vocabulary rows: each rank computes its rows' logits and
    the group gathers them, so every rank sees the whole [N, vocab] logits in vocabulary order."""

    def __init__(self, weight: torch.Tensor, group: TensorParallelGroup) -> None:
        super().__init__(weight, screen=False)
        self.tp = group

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        local = F.linear(hidden, self.weight)
        if self.tp.size == 1:
            return local
        parts = [torch.empty_like(local) for _ in range(self.tp.size)]
        dist.all_gather(parts, local.contiguous(), group=self.tp.group)
        return torch.cat(parts, dim=-1)

    def token_logits(self, hidden: torch.Tensor, token: int) -> torch.Tensor:
        """[N] fp32 logits of one token: its row lives on one rank, the others add zeros."""
        rows = self.weight.shape[0]
        owner, row = divmod(token, rows)
        values = torch.zeros(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        if owner == self.tp.rank:
            values = hidden.float() @ self.weight[row].float()
        return self.tp.all_reduce(values)


def served_dtype(stored: torch.dtype, device: torch.device) -> torch.dtype:
    """Weights as stored, except bf16 on a CPU that cannot compute in it."""
    return cpu_compute_dtype(stored) if device.type == "cpu" else stored


def load_tensor_parallel(directory: Path, tp: TensorParallelGroup, device: torch.device, dtype: torch.dtype | None,
                         fill: Callable[[str, int, int], None] | None = None,
                         fp8: bool = False) -> tuple[Transformer, ShardedOutputHead]:
    """This rank's share of the native model directory's model, and its output head. `fill`
    (model_in_part) fetches the blocks of a remote model that the rank reads. dtype None: as
    stored (fp32 on a CPU without bf16). fp8: the feed-forward weights fp8.py names are quantized
    as each is read, so a rank never holds its whole share in the wider dtype."""
    with weight_slices(directory, fill) as (cfg, slices):
        check_splits(cfg, tp.size)
        with torch.device("meta"):
            model = Transformer(cfg)
        for name, param in list(model.named_parameters()):
            box = shard_box(name, param.shape, tp.rank, tp.size, cfg)
            local = slices[name][box]
            local = local.to(device=device, dtype=dtype or served_dtype(local.dtype, device))
            module_name, attribute = name.rsplit(".", 1)
            if fp8 and is_fp8_module(module_name, cfg):
                reduce = tp.all_reduce if module_name.endswith(COLUMN_SPLIT) else None
                _replace(model, module_name, Fp8Linear(local, reduce))
            elif module_name.endswith(COLUMN_SPLIT):
                _replace(model, module_name, RowParallelLinear(local, tp))
            else:
                setattr(model.get_submodule(module_name), attribute, nn.Parameter(local, requires_grad=False))
    model.init_buffers(device)
    assert model.output is not None  # built whole above
    return model.eval(), ShardedOutputHead(model.output.weight, tp)


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, child = name.rsplit(".", 1)
    setattr(model.get_submodule(parent), child, module)
