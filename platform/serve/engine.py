"""Continuous batching over one preallocated KV cache.

Slots of the cache hold requests. The decoding requests always occupy the prefix [0, n_decoding)
of the slots, so a decode step runs the model once over a plain slice of the cache (a view, no
gather). Up to `max_prefills` requests are prefilled in the slots right after that prefix; each
step they share `prefill_chunk` prompt tokens fairly (`fair_shares`), so a long prompt is spread
over several steps, never stalls the requests already decoding, and does not hold back the short
prompts that arrive behind it. A finished request leaves at a token boundary; the last decoding
request moves into its slot and the last prefill into the freed one, so the prefix stays dense.

The engine is single-threaded by design: `step()` does one round; `start()` runs steps on a
background thread and callers only `submit()` (thread-safe) and receive `Output`s through their
request's callback.
"""
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

import torch

from llamaops.platform.config.model import ModelConfig
from llamaops.platform.model import Transformer
from llamaops.platform.model.transformer import TransformerBlock
from llamaops.platform.tokenizer import Tokenizer

from .head import OutputHead
from .kv_store import DenseRows, PagedRows
from .metrics import EngineMetrics
from .sampling import SamplingParams, make_generator, sample
from .text import IncrementalText

log = logging.getLogger("llamaops.serve")


def fair_shares(needs: Sequence[int], budget: int) -> list[int]:
    """Split `budget` tokens among requests needing `needs` tokens: equal shares (in order, the
    first ones get the remainder), and what a request does not need goes to the others."""
    shares = [0] * len(needs)
    open_ = [i for i, need in enumerate(needs) if need > 0]
    while budget > 0 and open_:
        each, extra = divmod(budget, len(open_))
        for rank, i in enumerate(list(open_)):
            give = min(needs[i] - shares[i], each + (rank < extra))
            shares[i] += give
            budget -= give
            if shares[i] == needs[i]:
                open_.remove(i)
    return shares


class QueueFull(RuntimeError):
    """The waiting queue is at its bound: shed load instead of growing memory."""


class EngineClosed(RuntimeError):
    """The engine is shutting down and accepts no new requests."""


@dataclass
class Output:
    text: str  # newly final text
    token_id: int | None  # the token just generated (None on the closing output of a stop sequence)
    finish_reason: str | None = None  # "stop" | "length" | "cancelled" | "error: ..."


_ids = itertools.count()


@dataclass(eq=False)
class Request:
    prompt: Sequence[int]
    params: SamplingParams
    on_output: Callable[[Output], None] = lambda output: None
    id: int = field(default_factory=lambda: next(_ids))
    generated: list[int] = field(default_factory=list)
    finish_reason: str | None = None
    cursor: int = 0  # prompt tokens already in the cache
    arrived: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None
    cancelled: bool = False
    _text: IncrementalText | None = None
    _generator: torch.Generator | None = None

    @property
    def text(self) -> str:
        return self._text.text if self._text else ""

    @property
    def length(self) -> int:
        return len(self.prompt) + len(self.generated)


def _cache_config(model: Transformer) -> ModelConfig:
    """The model's config with the key/value heads this process holds (a tensor-parallel rank
    holds its share of them)."""
    block = cast(TransformerBlock, next(iter(model.layers.values())))  # a ModuleDict yields nn.Module
    keys = block.attention.wk.weight
    return model.cfg.model_copy(update={"n_kv_heads": keys.shape[0] // model.cfg.head_dim})


class Engine:
    def __init__(
        self,
        model: Transformer,
        tokenizer: Tokenizer,
        *,
        max_batch: int = 32,
        max_queue: int = 256,
        prefill_chunk: int = 256,
        max_prefills: int = 4,
        max_seq_len: int | None = None,
        screen_greedy: bool = True,
        kv_block_size: int | None = None,
        kv_blocks: int | None = None,
        head: OutputHead | None = None,
    ) -> None:
        """kv_block_size: keep keys and values in paged blocks of this many tokens (kv_store.py)
        instead of one dense max_seq_len row per slot; kv_blocks: the pool's size (default: as
        many tokens as the dense cache). head: the output projection (default: the model's own,
        with the greedy screen when `screen_greedy`); a tensor-parallel model brings its sharded
        one (tensor_parallel.py)."""
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_batch, self.max_queue, self.prefill_chunk = max_batch, max_queue, prefill_chunk
        self.max_prefills = max_prefills
        self.max_seq_len = min(max_seq_len or model.cfg.max_seq_len, model.cfg.max_seq_len)
        dtype = next(model.parameters()).dtype
        device = next(model.parameters()).device
        cache_cfg = _cache_config(model)
        if kv_block_size is None:
            self.kv: DenseRows | PagedRows = DenseRows(cache_cfg, max_batch, self.max_seq_len, dtype, device)
        else:
            blocks = kv_blocks or max_batch * -(-self.max_seq_len // kv_block_size)
            self.kv = PagedRows(cache_cfg, blocks, kv_block_size, dtype, device)
        self.device = device
        if head is None:
            assert model.output is not None  # without a head of its own, the model is whole (output included)
            head = OutputHead(model.output.weight, screen=screen_greedy)
        self.head = head
        self.decoding: list[Request] = []  # slot i holds decoding[i]
        self.prefilling: list[Request] = []  # slot len(decoding) + i holds prefilling[i]
        self.waiting: deque[Request] = deque()
        self.metrics = EngineMetrics()
        self._lock = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None

    # -- intake (any thread) -------------------------------------------------------------------
    def check(self, prompt_tokens: int, max_tokens: int) -> None:
        """Raise ValueError when a request can never fit the context."""
        if prompt_tokens < 1:
            raise ValueError("the prompt is empty")
        if prompt_tokens + max_tokens > self.max_seq_len:
            raise ValueError(
                f"the prompt has {prompt_tokens} tokens and max_tokens is {max_tokens}: together more than "
                f"the context of {self.max_seq_len} tokens; shorten the prompt or lower max_tokens"
            )
        if not self.kv.fits(prompt_tokens + max_tokens):
            raise ValueError(
                f"the prompt has {prompt_tokens} tokens and max_tokens is {max_tokens}: together more than the "
                f"server's whole KV cache; shorten the prompt or lower max_tokens"
            )

    def submit(self, request: Request) -> Request:
        self.check(len(request.prompt), request.params.max_tokens)
        with self._lock:
            if self._closed:
                raise EngineClosed("the server is shutting down")
            if len(self.waiting) >= self.max_queue:
                self.metrics.rejected += 1
                raise QueueFull(f"{len(self.waiting)} requests are already waiting; retry later")
            self._prepare(request)
            self._enqueue(request)
            self.metrics.requests += 1
            self._lock.notify()
        return request

    def _prepare(self, request: Request) -> None:
        request._text = IncrementalText(self.tokenizer, request.params.stop)
        request._generator = make_generator(request.params.seed)

    def _enqueue(self, request: Request) -> None:
        """(Under the lock) a submitted request joins the queue."""
        self.waiting.append(request)

    def cancel(self, request: Request) -> None:
        request.cancelled = True

    @property
    def busy(self) -> bool:
        return bool(self.waiting or self.decoding or self.prefilling)

    # -- the loop ------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="llamaops-engine", daemon=True)
        self._thread.start()

    def close(self, timeout: float | None = None) -> None:
        """Refuse new requests, let the admitted ones finish, stop the loop."""
        with self._lock:
            self._closed = True
            self._lock.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self.busy and not self._closed:
                    self._lock.wait()
                if not self.busy and self._closed:
                    return
            try:
                self.step()
            except Exception as exc:  # a bug must not hang every client: fail what is in flight
                log.exception("engine step failed; failing every request in flight")
                self._fail_all(f"error: {type(exc).__name__}: {exc}")

    def run_until_idle(self) -> None:
        while self.busy:
            self.step()

    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams) -> list[Request]:
        """Synchronous batched generation (no background thread)."""
        requests = [self.submit(Request(list(p), params)) for p in prompts]
        self.run_until_idle()
        return requests

    @torch.inference_mode()
    def step(self) -> None:
        """One round: drop cancelled requests, prefill up to `prefill_chunk` prompt tokens shared by
        up to `max_prefills` requests, then one decode step for every decoding request."""
        for request in [r for r in self.decoding if r.cancelled]:
            self._finish(request, "cancelled")
        for request in [r for r in self.prefilling if r.cancelled]:
            self._finish(request, "cancelled")
        self._prefill(self.prefill_chunk)
        if self.decoding:
            self._decode()
        self.metrics.batch_size = len(self.decoding)
        self.metrics.queue_depth = len(self.waiting)
        self.metrics.in_flight = len(self.waiting) + len(self.prefilling) + len(self.decoding)

    def _prefill(self, budget: int) -> None:
        """Spend up to `budget` prompt tokens on the prefilling requests, shared fairly, then move
        the ones whose prompt is complete into the decoding prefix with their first token."""
        while budget > 0 and self._admit():
            shares = fair_shares([len(r.prompt) - r.cursor for r in self.prefilling], budget)
            completed = []
            for index, (request, share) in enumerate(zip(self.prefilling, shares)):
                if share:
                    hidden = self._prefill_chunk(request, len(self.decoding) + index, share)
                    if request.cursor == len(request.prompt):
                        completed.append((request, hidden))
            budget -= sum(shares)
            for request, _ in completed:
                self._start_decoding(request)
            if completed:
                self._advance([request for request, _ in completed], torch.cat([h for _, h in completed]))

    def _admit(self) -> bool:
        """Move waiting requests into free prefill slots; True when any request is prefilling."""
        while len(self.prefilling) < self.max_prefills and len(self.decoding) + len(self.prefilling) < self.max_batch:
            with self._lock:
                if not self.waiting or not (self.waiting[0].cancelled or self.kv.admit(self.waiting[0])):
                    break  # a request waits, in order, until the KV blocks it needs are free
                request = self.waiting.popleft()
            if request.cancelled:
                self._emit(request, Output("", None, "cancelled"))
                continue
            self.prefilling.append(request)
        return bool(self.prefilling)

    def _prefill_chunk(self, request: Request, slot: int, size: int) -> torch.Tensor:
        """Run the next `size` prompt tokens of a request in its slot; its last hidden state [1, dim]."""
        chunk = list(request.prompt[request.cursor : request.cursor + size])
        self.kv.grow(request, request.cursor + len(chunk))
        positions = torch.arange(request.cursor, request.cursor + len(chunk), device=self.device).unsqueeze(0)
        hidden = self._forward(torch.tensor([chunk], device=self.device), positions, [request], slot, last_only=True)
        request.cursor += len(chunk)
        self.metrics.prompt_tokens += len(chunk)
        return hidden[:, -1]

    def _start_decoding(self, request: Request) -> None:
        """A prefilled request joins the decoding prefix: it takes the first prefill slot."""
        index, first = self.prefilling.index(request), len(self.decoding)
        if index:
            self._swap(first, first + index, max(request.cursor, self.prefilling[0].cursor))
            self.prefilling[0], self.prefilling[index] = request, self.prefilling[0]
        self.decoding.append(self.prefilling.pop(0))

    def _decode(self) -> None:
        rows = self.decoding
        for request in rows:
            self.kv.grow(request, request.length)
        tokens = torch.tensor([[r.generated[-1]] for r in rows], device=self.device)
        positions = torch.tensor([[r.length - 1] for r in rows], device=self.device)
        self._advance(rows, self._forward(tokens, positions, rows, 0)[:, -1])

    def _forward(self, tokens, positions, requests, first: int, last_only: bool = False) -> torch.Tensor:
        """Final hidden states [B, T, dim] of `requests`, which occupy the slots from `first` on."""
        view = self.kv.view(requests, first)
        return self.model(tokens, positions=positions, cache=view, last_only=last_only, project=False)

    def _advance(self, requests: Sequence[Request], hidden: torch.Tensor) -> None:
        """Accept each request's next token; a request whose own token could not be drawn fails
        alone, with a log line, and the others go on."""
        for request, token in zip(list(requests), self._next_tokens(requests, hidden)):
            if isinstance(token, Exception):
                log.error("request %d failed while sampling (%s): %s", request.id, request.params, token)
                self._finish(request, f"error: {type(token).__name__}: {token}")
            else:
                self._accept(request, token)

    def _next_tokens(self, requests: Sequence[Request], hidden: torch.Tensor) -> list[int | Exception]:
        """The next token of each request from its last hidden state [N, dim]: greedy rows through
        the head's exact argmax, the others sampled from their logits (the error, for a row whose
        draw failed)."""
        tokens: list[int | Exception] = [0] * len(requests)
        greedy = [i for i, r in enumerate(requests) if r.params.greedy]
        sampled = [i for i, r in enumerate(requests) if not r.params.greedy]
        if greedy:
            rows = hidden if len(greedy) == len(requests) else hidden[greedy]
            for i, token in zip(greedy, self.head.argmax(rows)):
                tokens[i] = token
        if sampled:
            # Sampling draws with a CPU generator: the logits come to it (a no-op on a CPU).
            for i, logits in zip(sampled, self.head.logits(hidden[sampled]).cpu()):
                generator = requests[i]._generator
                assert generator is not None  # _prepare gave every submitted request one
                try:
                    tokens[i] = sample(logits, requests[i].params, generator)
                except Exception as exc:  # one request's parameters must not fail the batch
                    tokens[i] = exc
        return tokens

    def _accept(self, request: Request, token: int) -> None:
        """Record a request's next token and tell its client."""
        if request.first_token_at is None:
            request.first_token_at = time.perf_counter()
            self.metrics.observe_ttft(request.first_token_at - request.arrived)
        self.metrics.generated_tokens += 1
        incremental = request._text
        assert incremental is not None  # _prepare gave every submitted request one
        if token in request.params.stop_ids:
            self._finish(request, "stop", text=incremental.finish())
            return
        request.generated.append(token)
        text = incremental.add(token)
        if incremental.stopped:
            self._finish(request, "stop", text=text, token=token)
        elif len(request.generated) >= request.params.max_tokens or request.length >= self.max_seq_len:
            self._finish(request, "length", text=text + incremental.finish(), token=token)
        else:
            self._emit(request, Output(text, token))

    def _finish(self, request: Request, reason: str, text: str = "", token: int | None = None) -> None:
        request.finish_reason = reason
        self.kv.release(request)
        if request in self.prefilling:
            self._release_prefill(self.prefilling.index(request))
        elif request in self.decoding:
            self._release(self.decoding.index(request))
        self.metrics.finished(reason)
        self._emit(request, Output(text, token, reason))

    def _release(self, slot: int) -> None:
        """Free a decoding slot, keeping decoding requests dense in [0, n) and the prefills right
        after: the last decoding request fills the hole, the last prefill the one that leaves."""
        last = len(self.decoding) - 1
        if slot != last:
            self._move(last, slot, self.decoding[last].length)
            self.decoding[slot] = self.decoding[last]
        self.decoding.pop()
        if self.prefilling:
            moved = self.prefilling.pop()
            self._move(last + 1 + len(self.prefilling), last, moved.cursor)
            self.prefilling.insert(0, moved)

    def _release_prefill(self, index: int) -> None:
        """Free a prefill slot; the last prefill moves into it."""
        moved = self.prefilling.pop()
        if index < len(self.prefilling):
            first = len(self.decoding)
            self._move(first + len(self.prefilling), first + index, moved.cursor)
            self.prefilling[index] = moved

    def _move(self, src: int, dst: int, length: int) -> None:
        self.kv.move(src, dst, length)

    def _swap(self, a: int, b: int, length: int) -> None:
        self.kv.swap(a, b, length)

    def _fail_all(self, reason: str) -> None:
        with self._lock:
            pending = list(self.waiting)
            self.waiting.clear()
        for request in [*self.decoding, *self.prefilling, *pending]:
            self.kv.release(request)
            request.finish_reason = reason
            self._emit(request, Output("", None, reason))
        self.decoding, self.prefilling = [], []

    def _emit(self, request: Request, output: Output) -> None:
        try:
            request.on_output(output)
        except Exception:  # a vanished client must not take the engine down
            self.cancel(request)
