"""This rank's share of a starting model, without any rank ever holding the whole model.

Torchtitan's order: the Transformer is built on the meta device (shapes only), placed as the
layout says (rank_model.build_rank_model: TP, pipeline stages, CP, FSDP2), then each part is
given empty storage on the device (`to_empty`: only this rank's shards) and its shards are filled
in place: from the seed (model/weight_init.py draws exactly a shard's values, so every layout
starts from the weights the one-process `Transformer.init_weights` gives), then the
non-persistent rotary table.
"""
import torch
from torch.distributed.tensor import DTensor
from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

from llamaops.platform.config.model import ModelConfig
from llamaops.platform.config.parallel import ParallelLayout
from llamaops.platform.model.transformer import Transformer
from llamaops.platform.model.weight_init import fill_

from .rank_model import RankModel, build_rank_model


def initialised_rank_model(cfg: ModelConfig, layout: ParallelLayout, device: torch.device, seed: int) -> RankModel:
    """The model `cfg` placed as `layout` says, this rank's shards initialised from `seed`."""
    placed = placed_on_meta(cfg, layout, device)
    for part in placed.parts:
        init_part(part, seed, device)
    return placed


def placed_on_meta(cfg: ModelConfig, layout: ParallelLayout, device: torch.device) -> RankModel:
    """The model `cfg` placed as `layout` says, every parameter still on the meta device."""
    with torch.device("meta"):
        whole = Transformer(cfg)
    return build_rank_model(whole, layout, device)


def init_part(part: Transformer, seed: int, device: torch.device) -> None:
    """Give `part` (placed, on the meta device) storage on `device` and its seeded weights."""
    part.to_empty(device=device)
    inits = part.weight_inits()
    for name, param in part.named_parameters():
        local, offset = local_box(param)
        fill_(local, inits[name], seed, name, param.shape, offset)
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
