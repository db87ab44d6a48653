"""The engine of a tensor-parallel server: one engine per rank, all in step.

Every rank runs the same `Engine` over its share of the model (tensor_parallel.py): the scheduler
is deterministic, so ranks that see the same requests at the same step boundaries batch, cache,
finish and sample alike (the gathered logits are the same bytes on every rank, and each request's
generator the same seed). Only the leader (rank 0) talks to clients. At the start of each step it
sends the followers what arrived and what was cancelled since the last one (`Intake`); requests
and cancellations never touch the engine's state mid-step. An idle leader still sends an empty
intake every `HEARTBEAT_S`, so followers waiting in the broadcast never reach the group's timeout.
"""
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
import torch.distributed as dist

from llamaops.platform.model import Transformer
from llamaops.platform.tokenizer import Tokenizer

from .engine import Engine, Request
from .head import OutputHead
from .sampling import SamplingParams

log = logging.getLogger("llamaops.serve")
HEARTBEAT_S = 60.0


@dataclass
class Intake:
    """What changes between two steps: new requests (id, prompt, params) and cancelled ids."""

    arrivals: list[tuple[int, list[int], SamplingParams]] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    stop: bool = False  # the leader is closing: followers return


class IntakeChannel:
    """Broadcasts each step's intake from the group's first rank to the others, over a CPU (gloo)
    group: a few hundred bytes a step, pickled."""

    def __init__(self, group: dist.ProcessGroup | None = None) -> None:
        self.group = group
        self.leader = dist.get_global_rank(group, 0) if group is not None else 0
        self.leads = dist.get_rank() == self.leader

    def send(self, intake: Intake) -> None:
        dist.broadcast_object_list([intake], src=self.leader, group=self.group)

    def receive(self) -> Intake:
        box: list[Intake | None] = [None]
        dist.broadcast_object_list(box, src=self.leader, group=self.group)
        intake = box[0]
        assert intake is not None  # the broadcast filled the box with the leader's intake
        return intake


class LockstepEngine(Engine):
    """An engine that keeps in step with the same engine on the other ranks of its channel. The
    leader is used like any engine (submit, cancel, start, close); a follower calls `follow()`."""

    def __init__(self, model: Transformer, tokenizer: Tokenizer, channel: IntakeChannel, *, head: OutputHead,
                 on_failure: Callable[[str], None] = lambda reason: None, **options) -> None:
        """on_failure: called on the leader after a failed step (every request in flight failed):
        the ranks may have left step, so the server must stop."""
        super().__init__(model, tokenizer, head=head, **options)
        self.channel = channel
        self.on_failure = on_failure
        self._arrived: list[Request] = []
        self._cancels: set[int] = set()

    # -- the leader ----------------------------------------------------------------------------
    def submit(self, request: Request) -> Request:
        if request.params.seed is None:  # every rank must draw from the same seed
            request.params = replace(request.params, seed=random.getrandbits(62))
        return super().submit(request)

    def _enqueue(self, request: Request) -> None:
        self._arrived.append(request)

    def cancel(self, request: Request) -> None:
        with self._lock:
            self._cancels.add(request.id)
            self._lock.notify()

    @property
    def _pending(self) -> bool:
        return self.busy or bool(self._arrived or self._cancels)

    @torch.inference_mode()
    def step(self) -> None:
        with self._lock:
            arrived, self._arrived = self._arrived, []
            cancelled, self._cancels = sorted(self._cancels), set()
        intake = Intake([(r.id, list(r.prompt), r.params) for r in arrived], cancelled)
        self.channel.send(intake)
        with self._lock:
            self.waiting.extend(arrived)
        self._cancel(cancelled)
        super().step()

    def _run(self) -> None:
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._pending or self._closed, timeout=HEARTBEAT_S)
                closing = self._closed and not self._pending
            if closing:
                self.channel.send(Intake(stop=True))
                return
            try:
                self.step()  # with nothing to do, a heartbeat
            except Exception as exc:
                log.exception("tensor-parallel engine step failed; failing every request in flight")
                reason = f"error: {type(exc).__name__}: {exc}"
                self._fail_all(reason)
                self.on_failure(reason)
                return

    # -- a follower ----------------------------------------------------------------------------
    @torch.inference_mode()
    def follow(self) -> None:
        """Run the leader's steps until it closes."""
        while not (intake := self.channel.receive()).stop:
            for request_id, prompt, params in intake.arrivals:
                request = Request(prompt, params, id=request_id)
                self._prepare(request)
                self.waiting.append(request)
            self._cancel(intake.cancelled)
            Engine.step(self)

    def _cancel(self, ids: list[int]) -> None:
        if ids:
            wanted = set(ids)
            for request in [*self.waiting, *self.prefilling, *self.decoding]:
                if request.id in wanted:
                    request.cancelled = True
