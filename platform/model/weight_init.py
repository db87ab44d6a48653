"""Seeded weight initialisation whose values do not depend on how the model is cut or sharded.

Every parameter has its own random streams, keyed by the seed and the parameter's name in the
whole model ("layers.7.attention.wq.weight"). It is drawn in blocks of whole rows (about
BLOCK_ELEMENTS values each, a count fixed by the parameter's shape alone), each block from a
generator seeded by (seed, name, block index), on the CPU. Any box of a parameter (the whole
tensor, a pipeline stage's copy, an FSDP or tensor-parallel shard) is filled by drawing only the
blocks its rows cross and keeping its columns, so the same seed gives the same weights in one
process and under every layout, on any device, in any visiting order; and filling a box holds no
more than the box and one block.
"""
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

BLOCK_ELEMENTS = 1 << 20  # values one generator draws (4 MiB in fp32): the transient memory of a fill


@dataclass(frozen=True)
class Init:
    """A parameter's starting distribution. trunc_normal's bounds `a`, `b` are absolute values,
    as in nn.init.trunc_normal_ (whose defaults they keep)."""

    kind: Literal["normal", "trunc_normal", "ones"]
    std: float = 1.0
    a: float = -2.0
    b: float = 2.0


ONES = Init("ones")


def prefixed(prefix: str, inits: dict[str, Init]) -> dict[str, Init]:
    """A submodule's inits under its name in the parent module."""
    return {f"{prefix}.{name}": init for name, init in inits.items()}


@torch.no_grad()
def fill_(
    target: torch.Tensor,
    init: Init,
    seed: int,
    name: str,
    shape: Sequence[int] | None = None,
    offset: Sequence[int] | None = None,
) -> torch.Tensor:
    """Fill `target` with its values of parameter `name` initialised from `seed`: `target` is the
    box of the parameter (whole shape `shape`, default target's own) that starts at `offset`
    (default: the origin) and has target's shape."""
    shape = tuple(target.shape if shape is None else shape)
    offset = tuple(offset or (0,) * len(shape))
    if init.kind == "ones":
        return target.fill_(1.0)
    if target.numel() == 0:  # an empty shard (more ranks than rows)
        return target
    if not shape:  # a scalar: one row of one value
        return fill_(target.view(1), init, seed, name, (1,), (0,))
    rows_per_block = max(1, BLOCK_ELEMENTS // max(1, math.prod(shape[1:])))
    start, stop = offset[0], offset[0] + target.shape[0]
    columns = tuple(slice(o, o + n) for o, n in zip(offset[1:], target.shape[1:]))
    for block in range(start // rows_per_block, -(-stop // rows_per_block)):
        first = block * rows_per_block
        last = min(first + rows_per_block, shape[0])
        values = _draw(init, _block_seed(seed, name, block), (last - first, *shape[1:]))
        low, high = max(first, start), min(last, stop)
        target[low - start : high - start].copy_(values[(slice(low - first, high - first), *columns)])
    return target


def _block_seed(seed: int, name: str, block: int) -> int:
    # A stable hash (not Python's, which is salted per process): every rank derives the same seed.
    digest = hashlib.blake2b(f"{seed}/{name}/{block}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _draw(init: Init, seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    values = torch.empty(shape)
    if init.kind == "normal":
        return nn.init.normal_(values, std=init.std, generator=generator)
    if init.kind == "trunc_normal":
        return nn.init.trunc_normal_(values, std=init.std, a=init.a, b=init.b, generator=generator)
    raise ValueError(f"unknown init kind {init.kind!r}")
