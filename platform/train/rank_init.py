"""This rank's share of a starting model, without any rank ever holding the whole model.

Torchtitan's order: the Transformer is built on the meta device (shapes only), placed as the
layout says (rank_model.build_rank_model: TP, pipeline stages, CP, FSDP2), then each part is
given empty storage on the device (`to_empty`: only this rank's shards) and its shards are filled
in place: from the seed (model/weight_init.py draws exactly a shard's values, so every layout
starts from the weights the one-process `Transformer.init_weights` gives), or from an input
model directory, reading only the shards' bytes; then the non-persistent rotary table.
"""
from collections.abc import Callable
from pathlib import Path

import torch
from torch.distributed.tensor import DTensor
from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

from llamaops.platform.config.model import ModelConfig
from llamaops.platform.config.parallel import ParallelLayout
from llamaops.platform.model.checkpoint import weight_slices
from llamaops.platform.model.transformer import Transformer
from llamaops.platform.model.weight_init import fill_

from .rank_model import RankModel, build_rank_model

# Fills `local`, the box of the named parameter of whole shape `shape` that starts at `offset`.
Filler = Callable[[str, torch.Tensor, torch.Size, tuple[int, ...]], None]


def initialised_rank_model(cfg: ModelConfig, layout: ParallelLayout, device: torch.device, seed: int) -> RankModel:
    """The model `cfg` placed as `layout` says, this rank's shards initialised from `seed`."""
    placed = placed_on_meta(cfg, layout, device)
    inits = {name: init for part in placed.parts for name, init in part.weight_inits().items()}

    def draw(name: str, local: torch.Tensor, shape: torch.Size, offset: tuple[int, ...]) -> None:
        fill_(local, inits[name], seed, name, shape, offset)

    for part in placed.parts:
        materialise(part, device, draw)
    return placed


def loaded_rank_model(directory: Path, layout: ParallelLayout, device: torch.device,
                      fill: Callable[[str, int, int], None] | None = None) -> RankModel:
    """The model of a native model directory (model/checkpoint.py) placed as `layout` says, in fp32,
    this rank copying only its shards out of the memory-mapped weights files: a row shard reads
    its rows' pages; a column shard (TP's row-parallel weights) pages through every row but
    still allocates only its box. `fill` (model_in_part): fetches the blocks read, for a remote
    model."""
    with weight_slices(directory, fill) as (cfg, slices):
        placed = placed_on_meta(cfg, layout, device)

        def read(name: str, local: torch.Tensor, shape: torch.Size, offset: tuple[int, ...]) -> None:
            local.copy_(slices[name][tuple(slice(start, start + n) for start, n in zip(offset, local.shape))])

        for part in placed.parts:
            materialise(part, device, read)
    return placed


def placed_on_meta(cfg: ModelConfig, layout: ParallelLayout, device: torch.device) -> RankModel:
    """The model `cfg` placed as `layout` says, every parameter still on the meta device."""
    with torch.device("meta"):
        whole = Transformer(cfg)
    return build_rank_model(whole, layout, device)


@torch.no_grad()
def materialise(part: Transformer, device: torch.device, fill: Filler) -> None:
    """Give `part` (placed, on the meta device) storage on `device`, have `fill` write each
    parameter's local box, then compute the rotary table."""
    part.to_empty(device=device)
    for name, param in part.named_parameters():
        local, offset = local_box(param)
        fill(name, local, param.shape, offset)
    part.init_buffers(device)


def local_box(param: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    """The part of `param` this rank stores (a DTensor's local shard, else the whole tensor),
    writable in place, and its offset in the whole parameter."""
    if not isinstance(param, DTensor):
        return param.data, (0,) * param.dim()
    shape, offset = compute_local_shape_and_global_offset(param.shape, param.device_mesh, param.placements)
    local = param.to_local()
    if tuple(local.shape) != tuple(shape):
        raise RuntimeError(f"local shard of shape {tuple(local.shape)}, its placements {param.placements} say {shape}")
    return local.detach(), tuple(offset)
