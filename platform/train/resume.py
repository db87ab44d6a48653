"""Resuming a run: restore the newest intact checkpoint. `latest_checkpoint` checks only what is
cheap (the manifest, sizes, the small files); data blocks are checked as each rank reads them, so a
checkpoint found damaged there is withdrawn (its completion marker removed: unfinished, skipped from
then on, rewritten when the run gets there again) and the previous one is restored instead."""
import logging

import torch
import torch.distributed as dist

from llamaops.platform.model.transformer import Transformer
from llamaops.platform.store import ArtifactError
from llamaops.platform.store.manifest import ManifestError

from .checkpoint_staging import distributed
from .checkpointing import Progress, latest_checkpoint, restore_checkpoint, withdraw_checkpoint

log = logging.getLogger(__name__)


def resume_checkpoint(
    root_uri: str, candidate_steps: list[int], parts: list[Transformer], optimizers: list[torch.optim.Optimizer]
) -> Progress | None:
    """Collective: the progress of the newest checkpoint that restored whole (None: there is none
    and nothing was loaded). A damaged one found after its load began leaves the weights partly
    overwritten, so when no earlier one is intact the run stops rather than train from them."""
    damaged: list[str] = []
    while (step := latest_checkpoint(root_uri, candidate_steps)) is not None:
        try:
            return restore_checkpoint(root_uri, step, parts, optimizers)
        except ManifestError as error:
            damaged.append(f"step {step} ({error})")
            log.warning("checkpoint step %d is damaged, restoring the previous one: %s", step, error)
            if not distributed() or dist.get_rank() == 0:
                withdraw_checkpoint(root_uri, step)
            if distributed():
                dist.barrier()  # every rank sees it withdrawn before looking again
    if damaged:
        raise ArtifactError(f"checkpoint {damaged[0]} is damaged and no earlier one is intact; it was withdrawn:"
                            " restart the run to train from the start")
    return None
