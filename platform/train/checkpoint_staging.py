"""Where the ranks write one checkpoint, and how it is published once all of them have.

On file:// the ranks share a filesystem (a cluster mounts the same volume on every node): rank 0
stages one directory next to the target, the others write into it, and rank 0 publishes it. On
s3:// nothing is shared: every rank stages its own files on its own filesystem and uploads them;
rank 0 then writes the completion marker naming every rank's files. No path crosses ranks.
Both are collective: every rank creates one and calls `publish` with the digests of the files it
wrote (hashed on its own filesystem); rank 0 gathers them and writes the manifest before the
checkpoint is visible.
"""
from contextlib import ExitStack
from pathlib import Path

import torch
import torch.distributed as dist

from llamaops.platform.store import ArtifactError, staged_output
from llamaops.platform.store.manifest import Digest, ManifestError, digest_files, merged, write_manifest


def distributed() -> bool:
    """Whether a process group is up (collectives needed); False in a single process."""
    return dist.is_available() and dist.is_initialized()


def flag_tensor(value: int) -> torch.Tensor:
    """A one-number tensor for a collective on the default group: NCCL (GPU training) takes only
    CUDA tensors, gloo CPU ones."""
    on_gpu = distributed() and dist.get_backend() == "nccl"
    return torch.tensor([value], dtype=torch.int32, device=torch.cuda.current_device() if on_gpu else "cpu")


def _barrier() -> None:
    if distributed():
        dist.barrier()


def _gathered(digests: dict[str, Digest]) -> list[dict[str, Digest]] | None:
    """Every rank's digests on rank 0 (names and hashes only, never a path to another rank's files)."""
    if not distributed():
        return [digests]
    parts = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(digests, parts, dst=0)
    return parts


def _seal(directory: Path, rank_zero_files: dict[str, str], parts: list[dict[str, Digest]], required: set[str]) -> None:
    """Rank 0: its own files, then the manifest of every rank's, once each file is accounted for."""
    for name, text in rank_zero_files.items():
        (directory / name).write_text(text)
    files = merged([*parts, digest_files(directory, sorted(rank_zero_files))], str(directory))
    missing = sorted(required - files.keys())
    if missing:
        raise ManifestError(f"no rank hashed {missing[0]}; nothing was published")
    write_manifest(directory, files)


def _agreed(failure: str | None) -> None:
    """Rank 0's outcome on every rank (a sync point): a failed seal fails every rank, none waits forever."""
    outcome = [failure]
    if distributed():
        dist.broadcast_object_list(outcome, src=0)
    if outcome[0] is not None:
        raise ArtifactError(outcome[0])


def _sealed(directory: Path, rank_zero_files: dict[str, str], parts: list[dict[str, Digest]] | None,
            required: set[str], stack: ExitStack | None = None) -> str | None:
    """Rank 0 seals (and with `stack`, publishes) the directory; the failure's line, if any."""
    try:
        with stack or ExitStack():
            _seal(directory, rank_zero_files, parts, required)
    except Exception as error:  # any failure (a full disk too) must reach the other ranks, not hang them
        return f"rank 0 could not publish {directory}: {error}"
    return None


class SharedDirectory:
    """file://: one directory every rank sees, staged and published by rank 0."""

    def __init__(self, uri: str, rank: int):
        self._stack = ExitStack() if rank == 0 else None
        directory = [None]
        if self._stack is not None:
            directory[0] = str(self._stack.enter_context(staged_output(uri, overwrite=True)))
        if distributed():
            dist.broadcast_object_list(directory, src=0)
        self.directory = Path(directory[0])

    def publish(self, rank_zero_files: dict[str, str], digests: dict[str, Digest], required: set[str]) -> None:
        parts = _gathered(digests)  # every rank's files are in before rank 0 publishes (closing the stack)
        failure = None
        if self._stack is not None:
            failure = _sealed(self.directory, rank_zero_files, parts, required, self._stack)
        _agreed(failure)  # and no rank goes on before the checkpoint is visible


class OwnDirectories:
    """s3://: each rank's files staged on its own filesystem and uploaded by that rank."""

    def __init__(self, uri: str, rank: int):
        from llamaops.platform.store import s3

        self._uri, self._rank, self._s3 = uri, rank, s3
        if rank == 0:
            s3.begin_parts(uri)  # a previous version is unfinished before any rank uploads (barrier in publish)
        self._part = s3.PartUpload(uri)
        self.directory = self._part.directory

    def publish(self, rank_zero_files: dict[str, str], digests: dict[str, Digest], required: set[str]) -> None:
        _barrier()
        parts = _gathered(digests)  # before uploading: the manifest travels with rank 0's files
        _agreed(_sealed(self.directory, rank_zero_files, parts, required) if self._rank == 0 else None)
        files = self._part.upload()
        parts = [files]
        if distributed():  # file lists only (names and sizes), gathered on rank 0
            parts = [None] * dist.get_world_size() if self._rank == 0 else None
            dist.gather_object(files, parts, dst=0)
        if self._rank == 0:
            self._s3.publish_parts(self._uri, parts)
        _barrier()


def checkpoint_staging(uri: str, rank: int) -> SharedDirectory | OwnDirectories:
    return OwnDirectories(uri, rank) if uri.startswith("s3://") else SharedDirectory(uri, rank)
