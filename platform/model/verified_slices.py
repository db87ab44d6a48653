"""Lazy safetensors slices checked against a model directory's manifest as they are read.

A safetensors file is an 8-byte header length, a JSON header (each tensor's dtype, shape and
`data_offsets` in the data section) and the data. The header's bytes are checked before safetensors
parses them; a box read through a slice first checks the blocks holding the rows it spans, so a
rank reading its shard hashes about its shard's bytes (plus at most a block at each end), never
the whole model. A column box spans every row of its tensor, so it checks the whole tensor.
"""
import json
import struct
from typing import Any

from llamaops.platform.store.manifest import Manifest

TensorSpan = tuple[int, int, list[int]]  # first byte in the file, bytes, shape


def verified_header(manifest: Manifest, name: str) -> dict[str, TensorSpan]:
    """Each tensor's span in weights file `name`, read from its checked header."""
    manifest.verify_range(name, 0, 8)
    path = manifest.directory / name
    # Unbuffered: a buffered first read would keep bytes that checking the header's blocks may
    # only then fill in (a sparse copy of a remote file, Manifest.fill).
    with open(path, "rb", buffering=0) as stream:
        (length,) = struct.unpack("<Q", stream.read(8))
        manifest.verify_range(name, 8, length)  # a length past the file's end fails here
        stream.seek(8)
        header = json.loads(stream.read(length))
    start = 8 + length
    return {tensor: (start + entry["data_offsets"][0], entry["data_offsets"][1] - entry["data_offsets"][0],
                     entry["shape"])
            for tensor, entry in header.items() if tensor != "__metadata__"}


class VerifiedSlice:
    """A safetensors slice whose reads check the manifest's blocks they touch first."""

    def __init__(self, inner: Any, manifest: Manifest, name: str, span: TensorSpan):
        self._inner, self._manifest, self._name = inner, manifest, name
        self._start, self._bytes, self._shape = span

    def get_shape(self) -> list[int]:
        return self._inner.get_shape()

    def get_dtype(self) -> str:
        return self._inner.get_dtype()

    def __getitem__(self, key: Any) -> Any:
        offset, length = self._byte_range(key)
        self._manifest.verify_range(self._name, offset, length)
        return self._inner[key]

    def _byte_range(self, key: Any) -> tuple[int, int]:
        """The bytes a box spans: its rows' when it cuts the first dimension by a plain slice, else
        the whole tensor's (an upper bound either way)."""
        first = key[0] if isinstance(key, tuple) and key else key
        if isinstance(first, int) and self._shape:
            row = first % self._shape[0] if self._shape[0] else 0
            first = slice(row, row + 1)
        if not self._shape or not isinstance(first, slice) or first.step not in (None, 1):
            return self._start, self._bytes
        rows = self._shape[0]
        start, stop, _ = first.indices(rows)
        row_bytes = self._bytes // rows if rows else 0
        return self._start + start * row_bytes, max(stop - start, 0) * row_bytes
