"""torch.distributed.checkpoint reads that cannot run code from a checkpoint's bytes.

DCP's own reader unpickles `.metadata` with plain `pickle` and its load planner unpickles every
non-tensor item with `torch.load(weights_only=False)`: a crafted checkpoint executes whatever it
names, and the validity check that reads the metadata is the first thing to run it. Here the
metadata is unpickled by an allow-list of the classes DCP's metadata is made of, and non-tensor
items with `weights_only=True`. Anything else makes the checkpoint unreadable, never runs.
Given the checkpoint's manifest, the metadata's bytes are checked before they are unpickled, and
each rank checks the blocks of the byte ranges it reads before DCP reads them.
"""
import enum
import io
import pickle
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint._traverse import set_element
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.metadata import Metadata, StorageMeta
from torch.distributed.checkpoint.planner import LoadPlan, LoadPlanner, ReadItem

from llamaops.platform.store.manifest import Manifest, ManifestError

_METADATA_FILE = ".metadata"
# (module, name) pairs the metadata of a torch 2.x DCP checkpoint is made of: its dataclasses, the
# tensor properties' enums and torch.Size, and the relative paths of its storage files.
_ALLOWED = {
    "torch.distributed.checkpoint.metadata": {
        "Metadata", "MetadataIndex", "TensorStorageMetadata", "BytesStorageMetadata", "ChunkStorageMetadata",
        "TensorProperties", "StorageMeta", "_MEM_FORMAT_ENCODING",
    },
    "torch.distributed.checkpoint.filesystem": {"_StorageInfo"},
    "torch.serialization": {"_get_layout"},  # a layout looked up by its name
    "torch": {"Size"},
    "pathlib": {"Path", "PosixPath", "PurePosixPath"},
}


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint's metadata names something DCP's metadata is not made of."""


def _enum_member(cls: object, name: str) -> enum.Enum:
    """What `getattr` does in a DCP pickle: some Python 3.11 releases (3.11.2, Debian 12's) pickle an
    Enum member by name as getattr(its class, name). Only a member of an allowed Enum is looked up."""
    if isinstance(cls, type) and issubclass(cls, enum.Enum) and isinstance(name, str) and name in cls.__members__:
        return cls[name]
    raise UnsafeCheckpointError(f"the checkpoint metadata looks up {name!r} on {cls!r}, which is no allowed Enum")


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if name in _ALLOWED.get(module, ()):
            return super().find_class(module, name)
        if (module, name) == ("builtins", "getattr"):  # its arguments come through this allow-list too
            return _enum_member
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        raise UnsafeCheckpointError(f"the checkpoint metadata names {module}.{name}, which a DCP checkpoint never holds")


def read_metadata(checkpoint: Path, manifest: Manifest | None) -> Metadata:
    """The DCP metadata of the checkpoint directory, checked against `manifest` (the state
    directory's entries) when given, then unpickled by the allow-list."""
    if manifest is None:
        return parse_metadata((checkpoint / _METADATA_FILE).read_bytes())
    return parse_metadata(manifest.verified_bytes(_METADATA_FILE))


def parse_metadata(data: bytes) -> Metadata:
    metadata = _MetadataUnpickler(io.BytesIO(data)).load()
    if not isinstance(metadata, Metadata):
        raise UnsafeCheckpointError(f"the checkpoint metadata is a {type(metadata).__name__}, not DCP's Metadata")
    return metadata


class SafeFileSystemReader(dcp.FileSystemReader):
    def __init__(self, path: str, manifest: Manifest | None) -> None:
        super().__init__(path)
        self.manifest = manifest

    def read_metadata(self, *args, **kwargs) -> Metadata:
        if kwargs.get("rank") is not None:  # per-rank metadata files: not written by llamaops
            raise UnsafeCheckpointError("per-rank DCP metadata is not supported")
        metadata = read_metadata(Path(self.path), self.manifest)
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata

    def read_data(self, plan: LoadPlan, planner: LoadPlanner):
        # This rank's reads only: the blocks around its items' byte ranges, before DCP parses them.
        if self.manifest is not None:
            for item in plan.items:
                stored = self.storage_data[item.storage_index]
                self.manifest.verify_range(stored.relative_path, stored.offset, stored.length)
        return super().read_data(plan, planner)


class SafeLoadPlanner(DefaultLoadPlanner):
    """DCP's default planner, loading non-tensor items (learning rates, steps) as weights only."""

    def load_bytes(self, read_item: ReadItem, value: io.BytesIO) -> None:
        loaded = torch.load(value, weights_only=True)
        if self.flatten_state_dict:
            set_element(self.original_state_dict, self.mappings[read_item.dest_index.fqn], loaded)
        else:
            self.state_dict[read_item.dest_index.fqn] = loaded


def load(state: dict, checkpoint: Path, no_dist: bool, manifest: Manifest | None) -> None:
    """dcp.load of `state` in place from the checkpoint directory, with the safe reader and planner;
    a file that does not match `manifest` (the state directory's entries) raises ManifestError."""
    reader = SafeFileSystemReader(str(checkpoint), manifest)
    try:
        dcp.load(state, storage_reader=reader, planner=SafeLoadPlanner(), no_dist=no_dist)
    except CheckpointException as error:  # DCP wraps each rank's error: name the damage in one line
        damaged = [failure for failure in map(_unwrapped, error.failures.values()) if isinstance(failure, ManifestError)]
        if damaged:
            raise ManifestError(str(damaged[0])) from None
        raise


def _unwrapped(failure: object) -> object:
    return failure[0] if isinstance(failure, tuple) else failure
