"""A tensor-parallel (or FP8) server's processes: the leader (this process: HTTP and rank 0) and
one follower process per other rank, all on one machine (a pod's GPUs, or a CPU's cores).

Each rank joins one process group on the loopback interface (NCCL on GPUs with a gloo group for
the step intake, gloo on CPUs), reads only its share of the weights (tensor_parallel.py) and runs a
`LockstepEngine`. A follower that dies takes the server down with it: the ranks' collectives
cannot go on without it, and the orchestrator restarts the whole pod.
"""
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import torch
import torch.distributed as dist

from llamaops.platform.model.checkpoint import ModelDirectoryError, read_model_config
from llamaops.platform.tokenizer import load_tokenizer
from llamaops.platform.tracking.model_reference import ModelReferenceError, model_in_parts, model_source

from .engine import Engine
from .loading import LoadedModel, ModelNotFound
from .lockstep import IntakeChannel, LockstepEngine
from .tensor_parallel import TensorParallelError, TensorParallelGroup, check_splits, load_tensor_parallel

log = logging.getLogger("llamaops.serve")
RENDEZVOUS_HOST = "127.0.0.1"  # every rank is in this pod
# Long enough for the slowest rank to read its share of 405B; a collective that waits longer is hung.
GROUP_TIMEOUT = timedelta(minutes=30)
FOLLOWER_EXIT_S = 30.0  # a follower's grace to leave after the leader closes


@dataclass(frozen=True)
class RankSpec:
    """What every rank needs to join and load; picklable (it goes to the followers as is)."""

    source: str  # the model's artifact URI or directory, registry references resolved
    tp: int
    device: str  # "cpu" or "cuda"
    dtype: torch.dtype | None  # None: as stored
    port: int  # the group's rendezvous on RENDEZVOUS_HOST
    engine_options: dict = field(default_factory=dict)  # the same on every rank: the same schedule
    fp8: bool = False  # FP8 feed-forward weights (fp8.py)

    def device_of(self, rank: int) -> torch.device:
        return torch.device("cuda", rank) if self.device == "cuda" else torch.device("cpu")


def rank_spec(reference: str, tp: int, device: str, dtype: torch.dtype | None, engine_options: dict,
              tracking_uri: str | None = None, fp8: bool = False) -> RankSpec:
    """Resolve the model once, here, and check it splits over `tp` ranks: a missing model or a
    bad TP is one line before any process starts. Reads only the model's config."""
    try:
        source = model_source(reference, tracking_uri)
        with model_in_parts(source) as (directory, _):
            cfg = read_model_config(directory)
    except (ModelReferenceError, ModelDirectoryError) as exc:
        raise ModelNotFound(f"{exc}; tensor-parallel serving reads llamaops model directories "
                            "(`llamaops model import-hf` converts a Hugging Face one)") from None
    check_splits(cfg, tp)
    if device == "cuda" and torch.cuda.device_count() < tp:
        raise TensorParallelError(f"--tensor-parallel {tp} needs {tp} GPUs; this machine has {torch.cuda.device_count()}")
    with socket.socket() as probe:
        probe.bind((RENDEZVOUS_HOST, 0))
        port = probe.getsockname()[1]
    return RankSpec(source, tp, device, dtype, port, engine_options, fp8)


def _join(spec: RankSpec, rank: int) -> tuple[TensorParallelGroup, IntakeChannel | None, torch.device]:
    """This rank's group and intake channel (none for a single rank) on its device."""
    device = spec.device_of(rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    else:  # the ranks share the machine's cores
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // spec.tp))
    if spec.tp == 1:
        return TensorParallelGroup(0, 1, None), None, device
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                            init_method=f"tcp://{RENDEZVOUS_HOST}:{spec.port}", rank=rank, world_size=spec.tp,
                            timeout=GROUP_TIMEOUT)
    intake = dist.new_group(backend="gloo", timeout=GROUP_TIMEOUT) if device.type == "cuda" else None
    return TensorParallelGroup(rank, spec.tp, dist.group.WORLD), IntakeChannel(intake), device


def _load(spec: RankSpec, rank: int, on_failure: Callable[[str], None] = lambda reason: None) -> Engine:
    tp, channel, device = _join(spec, rank)
    with model_in_parts(spec.source) as (directory, fill):
        model, head = load_tensor_parallel(directory, tp, device, spec.dtype, fill, fp8=spec.fp8)
    if channel is None:
        return Engine(model, load_tokenizer(), head=head, **spec.engine_options)
    return LockstepEngine(model, load_tokenizer(), channel, head=head, on_failure=on_failure, **spec.engine_options)


def follower_main(spec: RankSpec, rank: int) -> None:
    """A follower process (rank >= 1): join, load its share, follow the leader's steps until it closes."""
    logging.basicConfig(level=logging.INFO, format=f"rank {rank}: %(message)s")
    # Ctrl-C or a TERM to the process group is the leader's to handle: it drains, then tells the
    # followers to stop; a follower leaving first would break the steps still in flight.
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, signal.SIG_IGN)
    torch.set_grad_enabled(False)
    engine = _load(spec, rank)
    assert isinstance(engine, LockstepEngine)
    engine.follow()
    dist.destroy_process_group()


class ServingRanks:
    """The leader's side: starts the followers, loads rank 0, watches the followers."""

    def __init__(self, spec: RankSpec, name: str) -> None:
        self.spec, self.name = spec, name
        context = multiprocessing.get_context("spawn")  # no forked copy of a thread-holding server
        self.followers = [context.Process(target=follower_main, args=(spec, rank), name=f"llamaops-tp-rank-{rank}",
                                          daemon=True) for rank in range(1, spec.tp)]
        self._closing = threading.Event()

    def load(self) -> LoadedModel:
        """(The server's loading thread) start the followers, then load rank 0's share."""
        for process in self.followers:
            process.start()
        threading.Thread(target=self._watch, name="llamaops-tp-watch", daemon=True).start()
        engine = _load(self.spec, 0, on_failure=self._fail)
        return LoadedModel(engine.model, self.name, self.spec.source, engine=engine)

    def _watch(self) -> None:
        while not self._closing.is_set():
            for rank, process in enumerate(self.followers, start=1):
                if process.exitcode and not self._closing.is_set():  # 0: it left when told to
                    self._fail(f"tensor-parallel rank {rank} exited with code {process.exitcode}")
            time.sleep(0.5)

    def _fail(self, reason: str) -> None:
        log.error("%s; stopping the server (its ranks can no longer run in step)", reason)
        for process in self.followers:
            if process.is_alive():
                process.kill()
        logging.shutdown()
        os._exit(1)

    def close(self) -> None:
        """After the engine closed (it told the followers to stop): wait for them, then make sure."""
        self._closing.set()
        for process in self.followers:
            process.join(FOLLOWER_EXIT_S if process.pid is not None else 0)
            if process.is_alive():
                process.kill()
