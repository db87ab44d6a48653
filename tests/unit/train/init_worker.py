"""One rank of the sharded initialisation checks, run as a script by parallel_launch.launch.

argv: STORE_FILE CHECK SOURCE LAYOUT...; RANK and WORLD_SIZE from the environment. SOURCE is
"seed" (weights drawn from SEED) or a native model directory of ODD (its weights read). A LAYOUT
names its model-parallel sizes ("tp2", "pp2v2": two stages per rank, "tp2cp2", "dp": none), DP
takes the other ranks. For each layout the rank builds its share of an oddly shaped model (uneven
shards, uneven pipeline stages) with train/rank_init.py, init blocks of a few rows so that shards
cut through blocks, and checks:
  same:   every parameter gathers (full_tensor) to the one-process model (Transformer.init_weights,
          or load_model), bit for bit, and the ranks together hold every parameter of the model;
  memory: the rank stores its shards only (with DP over the world: about 1/world of the
          model), and no operation while placing and initialising made a tensor larger than the
          largest of them or one init block: no whole parameter, let alone the whole model.
"""
import os
import re
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from llamaops.platform.config.model import ModelConfig
from llamaops.platform.config.parallel import ParallelLayout
from llamaops.platform.model import weight_init
from llamaops.platform.model.checkpoint import load_model
from llamaops.platform.model.transformer import Transformer
from llamaops.platform.train.rank_init import initialised_rank_model, loaded_rank_model, local_box
from llamaops.platform.train.rank_model import RankModel, worker_layout

ODD = ModelConfig(dim=32, n_layers=5, n_heads=4, n_kv_heads=2, ffn_hidden_dim=72, vocab_size=509, max_seq_len=64)
SEED = 11
BLOCK_ELEMENTS = 100  # 3 rows of 32 per block: shards start and end inside blocks


def layout_named(name: str, world: int) -> ParallelLayout:
    sizes = {dim: int(n) for dim, n in re.findall(r"(tp|cp|pp)(\d+)", name)}
    interleaved = {"pp_schedule": "interleaved_1f1b", "pp_stages_per_rank": 2} if "v2" in name else {}
    return worker_layout(ParallelLayout(**sizes, **interleaved), world)


class LargestAllocation(TorchDispatchMode):
    """The bytes of the largest storage any operation allocates (for a DTensor: its local shard's).
    An output on a storage the operation was given is no allocation: reading an input model views
    its memory-mapped weights files (file pages, read only where a shard's box is copied from)."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        given = {storage.data_ptr() for storage in _storages((args, kwargs))}
        fresh = [storage.nbytes() for storage in _storages(out) if storage.data_ptr() not in given]
        self.bytes = max([self.bytes, *fresh])
        return out


def _storages(tree) -> list[torch.UntypedStorage]:
    leaves = [leaf.to_local() if isinstance(leaf, DTensor) else leaf for leaf in tree_leaves(tree)]
    return [leaf if isinstance(leaf, torch.UntypedStorage) else leaf.untyped_storage()
            for leaf in leaves
            if isinstance(leaf, torch.UntypedStorage) or (isinstance(leaf, torch.Tensor) and not leaf.is_meta)]


def rank_model(source: str, layout: ParallelLayout) -> RankModel:
    if source == "seed":
        return initialised_rank_model(ODD, layout, torch.device("cpu"), SEED)
    return loaded_rank_model(Path(source), layout, torch.device("cpu"))


def one_process_model(source: str) -> Transformer:
    if source == "seed":
        model = Transformer(ODD)
        model.init_weights(SEED)
        return model
    return load_model(Path(source), dtype=torch.float32)


def check_same(source: str, name: str, world: int) -> None:
    layout = layout_named(name, world)
    placed = rank_model(source, layout)
    reference = one_process_model(source)
    want = dict(reference.named_parameters())
    held = set()
    for part in placed.parts:
        for param_name, param in part.named_parameters():
            got = param.full_tensor() if isinstance(param, DTensor) else param
            assert torch.equal(got, want[param_name]), f"{name}: {param_name} differs from the one-process model"
            held.add(param_name)
        assert torch.equal(part.rotary, reference.rotary), f"{name}: rotary table"
    everyone: list[set[str]] = [set() for _ in range(world)]
    dist.all_gather_object(everyone, held)
    assert set().union(*everyone) == set(want), f"{name}: parameters no rank holds"


def check_memory(source: str, name: str, world: int) -> None:
    layout = layout_named(name, world)
    with LargestAllocation() as largest:
        placed = rank_model(source, layout)
    stored = [local_box(p)[0] for part in placed.parts for p in part.parameters()]
    largest_shard = max(t.untyped_storage().nbytes() for t in stored)  # with FSDP2's padding
    block_bytes = 4 * BLOCK_ELEMENTS  # no row of ODD is wider than a block
    assert largest.bytes <= max(largest_shard, block_bytes), (name, largest.bytes, largest_shard)
    with torch.device("meta"):
        whole = list(Transformer(ODD).parameters())
    assert largest.bytes < max(p.numel() for p in whole) * 4, f"{name}: a whole parameter was allocated"
    if layout.dp == world:  # FSDP2 over every rank: each parameter's rows as torch.chunk splits them
        local = sum(t.numel() for t in stored)
        expected = sum(fsdp_rows(p.shape[0], world, dist.get_rank()) * p[0].numel() for p in whole)
        assert local == expected <= sum(p.numel() for p in whole) / world * 1.05, (name, local, expected)


def fsdp_rows(rows: int, world: int, rank: int) -> int:
    """The rows of a parameter that FSDP2 gives `rank`: torch.chunk's split (the last ranks may get fewer)."""
    chunks = torch.arange(rows).chunk(world)
    return len(chunks[rank]) if rank < len(chunks) else 0


def main() -> None:
    store_file, check, source, *layouts = sys.argv[1:]
    weight_init.BLOCK_ELEMENTS = BLOCK_ELEMENTS
    torch.set_num_threads(1)
    world = int(os.environ["WORLD_SIZE"])
    dist.init_process_group("gloo", init_method=f"file://{store_file}", rank=int(os.environ["RANK"]), world_size=world)
    try:
        for name in layouts:
            {"same": check_same, "memory": check_memory}[check](source, name, world)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
