"""Where the ranks write one checkpoint, and how it is published once all of them have.

On file:// the ranks share a filesystem (a cluster mounts the same volume on every node): rank 0
stages one directory next to the target, the others write into it, and rank 0 publishes it. On
s3:// nothing is shared: every rank stages its own files on its own filesystem and uploads them;
rank 0 then writes the completion marker naming every rank's files. No path crosses ranks.
Both are collective: every rank creates one and calls `publish`.
"""
from contextlib import ExitStack
from pathlib import Path

import torch.distributed as dist

from llamaops.platform.store import staged_output


def distributed() -> bool:
    """Whether a process group is up (collectives needed); False in a single process."""
    return dist.is_available() and dist.is_initialized()


def _barrier() -> None:
    if distributed():
        dist.barrier()


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

    def publish(self, rank_zero_files: dict[str, str]) -> None:
        _barrier()  # every rank's files are in before rank 0 publishes (closing the stack)
        if self._stack is not None:
            for name, text in rank_zero_files.items():
                (self.directory / name).write_text(text)
            self._stack.close()
        _barrier()  # and no rank goes on before the checkpoint is visible


class OwnDirectories:
    """s3://: each rank's files staged on its own filesystem and uploaded by that rank."""

    def __init__(self, uri: str, rank: int):
        from llamaops.platform.store import s3

        self._uri, self._rank, self._s3 = uri, rank, s3
        if rank == 0:
            s3.begin_parts(uri)  # a previous version is unfinished before any rank uploads (barrier in publish)
        self._part = s3.PartUpload(uri)
        self.directory = self._part.directory

    def publish(self, rank_zero_files: dict[str, str]) -> None:
        _barrier()
        if self._rank == 0:
            for name, text in rank_zero_files.items():
                (self.directory / name).write_text(text)
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
