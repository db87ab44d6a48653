"""Continuous-batching decode engine over one preallocated KV cache.

Cache rows are kept in order: rows [0, n_decoding) are decoding, rows [n_decoding, n_active) are
still prefilling. Each step decodes one token for every decoding row in one forward, then spends
the rest of the per-step token budget on prefill chunks, so a long prompt never stalls decode.
Finished requests leave at once; waiting ones join at the next step. Rows move by swapping cache
rows, so the decoding block stays a contiguous view of the cache.
"""
import queue
import threading
from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

import torch

from llamaops.platform.model import KVCache, Transformer

from .sampling import SamplingParams, sample


class RequestError(ValueError):
    """A request the engine cannot serve as given (HTTP 400)."""


class EngineFull(RuntimeError):
    """The waiting queue is at its bound; the caller should retry later (HTTP 429)."""


@dataclass
class Request:
    prompt: list[int]
    params: SamplingParams
    tokens: list[int] = field(default_factory=list)
    finish_reason: str | None = None  # "stop" | "length"
    prefilled: int = 0
    events: queue.Queue = field(default_factory=queue.Queue)  # token ids, then None when finished
    generator: torch.Generator | None = None

    @property
    def length(self) -> int:
        return len(self.prompt) + len(self.tokens)


class Engine:
    def __init__(
        self,
        model: Transformer,
        stop_ids: Collection[int] = (),
        decode: Callable[[Sequence[int]], str] | None = None,
        max_batch: int = 8,
        max_queue: int = 64,
        token_budget: int = 512,
        max_seq_len: int | None = None,
    ):
        self.model = model.eval()
        self.stop_ids = set(stop_ids)
        self.decode = decode  # needed only for stop strings
        self.max_batch, self.max_queue, self.token_budget = max_batch, max_queue, token_budget
        self.max_seq_len = max_seq_len or model.cfg.max_seq_len
        dtype = next(model.parameters()).dtype
        self.cache = KVCache.allocate(model.cfg, max_batch, self.max_seq_len, dtype=dtype)
        self.rows: list[Request] = []
        self.n_decoding = 0
        self.waiting: deque[Request] = deque()
        self.lock = threading.Lock()
        self.wake = threading.Condition(self.lock)
        self.steps = 0
        self.batch_sizes: list[int] = []

    # -- submitting -------------------------------------------------------------------------
    def check(self, prompt: Sequence[int], params: SamplingParams) -> None:
        if not prompt:
            raise RequestError("the prompt is empty")
        if len(prompt) + params.max_tokens > self.max_seq_len:
            raise RequestError(
                f"prompt of {len(prompt)} tokens + max_tokens {params.max_tokens} exceeds the context length {self.max_seq_len}"
            )
        if params.stop and self.decode is None:
            raise RequestError("stop sequences need a tokenizer")

    def submit(self, prompt: Sequence[int], params: SamplingParams) -> Request:
        self.check(prompt, params)
        generator = None
        if not params.greedy:
            generator = torch.Generator()
            generator.manual_seed(params.seed if params.seed is not None else torch.seed())
        request = Request(list(prompt), params, generator=generator)
        with self.wake:
            if len(self.waiting) >= self.max_queue:
                raise EngineFull(f"the request queue is full ({self.max_queue} waiting); retry later")
            self.waiting.append(request)
            self.wake.notify()
        return request

    @property
    def queue_depth(self) -> int:
        return len(self.waiting)

    @property
    def busy(self) -> bool:
        return bool(self.rows or self.waiting)

    # -- stepping ---------------------------------------------------------------------------
    def _swap(self, i: int, j: int) -> None:
        if i == j:
            return
        for t in (self.cache.keys, self.cache.values):
            row_i = t[:, i].clone()
            t[:, i] = t[:, j]
            t[:, j] = row_i
        self.rows[i], self.rows[j] = self.rows[j], self.rows[i]

    def _finish(self, row: int, reason: str) -> None:
        request = self.rows[row]
        request.finish_reason = reason
        request.events.put(None)
        last_decoding, last = self.n_decoding - 1, len(self.rows) - 1
        self._swap(row, last_decoding)  # keep the decoding block contiguous
        self._swap(last_decoding, last)
        self.rows.pop()
        self.n_decoding -= 1

    def _emit(self, row: int, token: int) -> None:
        request = self.rows[row]
        if token in self.stop_ids:
            return self._finish(row, "stop")
        request.tokens.append(token)
        if request.params.stop:
            text = self.decode(request.tokens)
            if any(s in text for s in request.params.stop):
                return self._finish(row, "stop")  # the server trims the text at the stop string
        request.events.put(token)
        if len(request.tokens) >= request.params.max_tokens:
            self._finish(row, "length")

    def _next_token(self, logits: torch.Tensor, request: Request) -> int:
        return sample(logits, request.params, request.generator)

    def _rows_view(self, start: int, stop: int) -> KVCache:
        return KVCache(self.cache.keys[:, start:stop], self.cache.values[:, start:stop])

    @torch.inference_mode()
    def step(self) -> bool:
        """One scheduling step; False when there was nothing to do."""
        with self.lock:
            while self.waiting and len(self.rows) < self.max_batch:
                self.rows.append(self.waiting.popleft())
        if not self.rows:
            return False
        budget = self.token_budget
        self.batch_sizes.append(len(self.rows))
        if self.n_decoding:
            d = self.n_decoding
            tokens = torch.tensor([[r.tokens[-1]] for r in self.rows[:d]])
            positions = torch.tensor([[r.length - 1] for r in self.rows[:d]])
            logits = self.model(tokens, positions=positions, cache=self._rows_view(0, d))[:, -1]
            budget -= d
            chosen = self._choose(logits, self.rows[:d])
            for row in reversed(range(d)):  # reversed: finishing a row only moves rows after it
                self._emit(row, chosen[row])
        row = self.n_decoding
        while row < len(self.rows) and budget > 0:
            request = self.rows[row]
            chunk = request.prompt[request.prefilled : request.prefilled + budget]
            start = request.prefilled
            positions = torch.arange(start, start + len(chunk)).unsqueeze(0)
            hidden_logits = self.model(torch.tensor([chunk]), positions=positions, cache=self._rows_view(row, row + 1))
            request.prefilled += len(chunk)
            budget -= len(chunk)
            if request.prefilled < len(request.prompt):
                break  # budget spent mid-prompt; continue next step
            self._swap(row, self.n_decoding)
            self.n_decoding += 1
            self._emit(self.n_decoding - 1, self._choose(hidden_logits[:, -1], [request])[0])
            row = self.n_decoding
        self.steps += 1
        return True

    def _choose(self, logits: torch.Tensor, requests: Sequence[Request]) -> list[int]:
        greedy = logits.argmax(-1).tolist()
        return [g if r.params.greedy else self._next_token(logits[i], r) for i, (g, r) in enumerate(zip(greedy, requests))]

    def run_until_idle(self) -> None:
        while self.step():
            pass

    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams) -> list[Request]:
        """Submit every prompt (bounded by the queue) and step until all have finished."""
        requests = [self.submit(p, params) for p in prompts]
        self.run_until_idle()
        return requests

    # -- background loop --------------------------------------------------------------------
    def start(self) -> threading.Thread:
        self.stopping = False
        thread = threading.Thread(target=self._loop, name="llamaops-engine", daemon=True)
        thread.start()
        self.thread = thread
        return thread

    def _loop(self) -> None:
        while True:
            with self.wake:
                while not self.waiting and not self.rows and not self.stopping:
                    self.wake.wait()
                if self.stopping and not self.waiting and not self.rows:
                    return
            self.step()

    def stop(self) -> None:
        """Finish in-flight and queued requests, then end the loop."""
        with self.wake:
            self.stopping = True
            self.wake.notify()
        self.thread.join()
