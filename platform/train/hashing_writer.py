"""A DCP writer that hashes the files its rank wrote, right after writing them, on its own
filesystem (in the background thread of an asynchronous save). The coordinator also hashes the
`.metadata` it writes and learns every rank's file names, so publishing can check that the
gathered digests cover every file of the checkpoint."""
from pathlib import Path

import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.metadata import Metadata
from torch.distributed.checkpoint.planner import SavePlan, SavePlanner
from torch.distributed.checkpoint.storage import WriteResult

from llamaops.platform.store.manifest import Digest, digest_file

_METADATA_FILE = ".metadata"


class HashingWriter(dcp.FileSystemWriter):
    """`digests`: this rank's files (named `prefix` + their name in the DCP directory) once written;
    `required` (the coordinator only): every file any rank wrote, and the metadata."""

    def __init__(self, path: Path, prefix: str) -> None:
        super().__init__(path)
        self._prefix = prefix
        self.digests: dict[str, Digest] = {}
        self.required: set[str] = set()

    def _hash(self, names: set[str]) -> None:
        self.digests |= {self._prefix + name: digest_file(Path(self.path) / name) for name in sorted(names)}

    def write_data(self, plan: SavePlan, planner: SavePlanner):
        future = super().write_data(plan, planner)
        self._hash({result.storage_data.relative_path for result in future.wait()})
        return future

    def finish(self, metadata: Metadata, results: list[list[WriteResult]]) -> None:
        super().finish(metadata, results)
        self._hash({_METADATA_FILE})
        written = {result.storage_data.relative_path for rank in results for result in rank}
        self.required = {self._prefix + name for name in written | {_METADATA_FILE}}
