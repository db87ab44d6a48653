"""When the loop's checkpoints are written and published, and which are kept.

Asynchronous (the default): a save copies the state to CPU memory and returns; a background
thread writes the files (DCP async_save) while training goes on, its collectives on a process
group of their own. The checkpoint is published (visible to resume) at the first step end where
every rank's write is done; the next save and the end of the run wait for it. A run killed before
then leaves an unpublished staging directory, so the previous checkpoint stays the latest.
Synchronous: a save returns once the checkpoint is published.
"""
import torch
import torch.distributed as dist

from llamaops.platform.model.transformer import Transformer

from .checkpoint_staging import flag_tensor
from .checkpointing import PendingCheckpoint, Progress, remove_checkpoint, start_checkpoint


class Checkpointer:
    def __init__(self, root_uri: str, steps: list[int], keep: int, asynchronous: bool, rank: int, world: int):
        self.root_uri, self.steps, self.keep = root_uri, steps, keep
        self.asynchronous, self.rank, self.world = asynchronous, rank, world
        self.pending: PendingCheckpoint | None = None
        # Gloo collectives of the background writes must not interleave with the training's.
        self.group = dist.new_group(backend="gloo") if asynchronous and world > 1 else None

    def save(self, parts: list[Transformer], optimizers: list[torch.optim.Optimizer], progress: Progress) -> None:
        """Collective. Starts checkpoint `progress.step` once the previous one is published."""
        self.wait()
        self.pending = start_checkpoint(self.root_uri, parts, optimizers, progress, self.asynchronous, self.group)
        if not self.asynchronous:
            self.wait()

    def poll(self) -> None:
        """Collective, at each step end: publish the pending checkpoint if every rank has written it."""
        if self.pending is None:
            return
        written = flag_tensor(int(self.pending.written()))
        if self.world > 1:
            dist.all_reduce(written, op=dist.ReduceOp.MIN)
        if written:
            self.wait()

    def wait(self) -> None:
        """Collective: publish the pending checkpoint (waiting for its writes), then apply retention."""
        if self.pending is None:
            return
        step = self.pending.step
        self.pending.publish()
        self.pending = None
        if self.rank == 0:
            written = [s for s in self.steps if s <= step]
            for old in written[: -self.keep]:
                remove_checkpoint(self.root_uri, old)
        if self.world > 1:
            dist.barrier()  # no rank runs ahead of a checkpoint that may be resumed from

    def close(self) -> None:
        """The end of the run: the last checkpoint is published before the workers return."""
        self.wait()
        if self.group is not None:
            dist.destroy_process_group(self.group)
            self.group = None
