"""Where the engine keeps each request's keys and values: one dense row per slot, or paged blocks.

`DenseRows`: the preallocated [layers, slots, kv_heads, max_seq_len, head_dim] cache; a slot's row
is the request's memory, so moving a request to another slot copies its row. Fastest to read
(a decode step attends over a plain slice), but memory is slots x max_seq_len whatever is used.

`PagedRows`: a pool of blocks of `block_size` tokens and a block table per request (vLLM's
PagedAttention layout). A request is admitted only when the blocks for its prompt plus max_tokens
are free (so a running request never waits for memory), takes them as its tokens arrive and
returns them all when it finishes or is cancelled; a full pool keeps requests waiting in the
queue. Moving a request between slots moves nothing. Attention reads the blocks through a gather
(`PagedView.update`), as plain torch has no paged-attention kernel.
"""
from collections.abc import Sequence

import torch

from llamaops.platform.config.model import ModelConfig
from llamaops.platform.model import KVCache


class DenseRows:
    def __init__(self, cfg: ModelConfig, slots: int, max_seq_len: int, dtype, device) -> None:
        self.cache = KVCache.allocate(cfg, slots, max_seq_len, dtype=dtype, device=device)

    def fits(self, tokens: int) -> bool:
        return True

    def admit(self, request) -> bool:
        return True

    def grow(self, request, tokens: int) -> None:
        pass

    def release(self, request) -> None:
        pass

    def view(self, requests: Sequence, first: int) -> KVCache:
        end = first + len(requests)
        return KVCache(self.cache.keys[:, first:end], self.cache.values[:, first:end])

    def move(self, src: int, dst: int, length: int) -> None:
        if src != dst and length:
            self.cache.keys[:, dst, :, :length] = self.cache.keys[:, src, :, :length]
            self.cache.values[:, dst, :, :length] = self.cache.values[:, src, :, :length]

    def swap(self, a: int, b: int, length: int) -> None:
        for tensor in (self.cache.keys, self.cache.values):
            held = tensor[:, a, :, :length].clone()
            tensor[:, a, :, :length] = tensor[:, b, :, :length]
            tensor[:, b, :, :length] = held


class PagedRows:
    PADDING = 0  # block id that pads short block tables; never handed out

    def __init__(self, cfg: ModelConfig, blocks: int, block_size: int, dtype, device) -> None:
        shape = (cfg.n_layers, blocks + 1, cfg.n_kv_heads, block_size, cfg.head_dim)
        self.keys = torch.zeros(shape, dtype=dtype, device=device)
        self.values = torch.zeros(shape, dtype=dtype, device=device)
        self.block_size, self.total = block_size, blocks
        self.free = list(range(blocks, 0, -1))  # pop() hands out the lowest id
        self.reserved = 0  # promised to admitted requests, not yet taken
        self._tables: dict[int, list[int]] = {}  # request id -> its blocks, in position order
        self._promised: dict[int, int] = {}  # request id -> blocks still promised to it

    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.block_size)

    @property
    def available(self) -> int:
        return len(self.free) - self.reserved

    def fits(self, tokens: int) -> bool:
        return self.blocks_for(tokens) <= self.total

    def admit(self, request) -> bool:
        """Reserve the blocks of a request's prompt plus max_tokens, if free."""
        need = self.blocks_for(len(request.prompt) + request.params.max_tokens)
        if need > self.available:
            return False
        self.reserved += need
        self._promised[request.id] = need
        self._tables[request.id] = []
        return True

    def grow(self, request, tokens: int) -> None:
        """Give a request the blocks to hold its first `tokens` positions."""
        table = self._tables[request.id]
        while len(table) < self.blocks_for(tokens):
            table.append(self.free.pop())
            self.reserved -= 1
            self._promised[request.id] -= 1

    def release(self, request) -> None:
        self.free.extend(reversed(self._tables.pop(request.id, [])))
        self.reserved -= self._promised.pop(request.id, 0)

    def table(self, request) -> list[int]:
        return self._tables[request.id]

    def view(self, requests: Sequence, first: int) -> "PagedView":
        return PagedView(self, [self._tables[r.id] for r in requests])

    def move(self, src: int, dst: int, length: int) -> None:
        pass  # a request's blocks follow it, whatever its slot

    def swap(self, a: int, b: int, length: int) -> None:
        pass


class PagedView:
    """The `KVCache.update` interface over some requests' block tables."""

    def __init__(self, rows: PagedRows, tables: list[list[int]]) -> None:
        self.rows = rows
        width = max(len(t) for t in tables)
        padded = [t + [PagedRows.PADDING] * (width - len(t)) for t in tables]
        self.table = torch.tensor(padded, dtype=torch.long, device=rows.keys.device)

    def update(self, layer: int, positions: torch.Tensor, k: torch.Tensor, v: torch.Tensor, length: int):
        """Store k, v [R, T, n_kv, D] at positions [R, T]; return the first `length` positions of
        every row as [R, n_kv, length, D] (gathered from the blocks)."""
        size = self.rows.block_size
        blocks = self.table.gather(1, positions // size)
        offsets = positions % size
        out = []
        for store, new in ((self.rows.keys[layer], k), (self.rows.values[layer], v)):
            store[blocks, :, offsets] = new.to(store.dtype)
            gathered = store[self.table[:, : -(-length // size)]]  # [R, blocks, n_kv, size, D]
            rows, n_blocks, heads, _, dim = gathered.shape
            out.append(gathered.transpose(1, 2).reshape(rows, heads, n_blocks * size, dim)[:, :, :length])
        return out[0], out[1]
