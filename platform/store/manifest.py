"""SHA-256 manifests: `manifest.json` in an artifact directory lists each file's size, its SHA-256
and the SHA-256 of each of its blocks (`block_bytes` each, the last one shorter).

The writer of a file hashes it on its own filesystem (`digest_file`); one writer gathers the small
{file: digest} maps and writes the manifest before the artifact becomes visible. Readers check the
files they parse (configs, DCP metadata, safetensors headers) by their whole hash and parse exactly
the bytes they checked; data files are checked block by block over the byte ranges a reader reads,
so a rank reading its shard hashes its shard's blocks, never the whole artifact.

The manifest finds damage (a flipped block, a same-size overwrite, a file of another version); it is
not a signature: whoever can rewrite every file of a directory can rewrite its manifest too.
"""
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .uri import ArtifactError

MANIFEST_FILE = "manifest.json"
FORMAT = "llamaops-manifest"
FORMAT_VERSION = 1
BLOCK_BYTES = 64 * 2**20  # a reader of a few bytes hashes at most two blocks around them

Digest = dict[str, Any]  # {"size": int, "sha256": hex, "blocks": [hex, ...]}


class ManifestError(ArtifactError):
    """An artifact's manifest is missing or unreadable, or a file does not match it."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest_file(path: Path, block_bytes: int | None = None) -> Digest:
    """The size, SHA-256 and block hashes of one file, read once."""
    block_bytes = block_bytes or BLOCK_BYTES
    whole, blocks, size = hashlib.sha256(), [], 0
    with open(path, "rb") as stream:
        while block := stream.read(block_bytes):
            whole.update(block)
            blocks.append(_sha256(block))
            size += len(block)
    return {"size": size, "sha256": whole.hexdigest(), "blocks": blocks}


def digest_files(root: Path, relatives: list[str]) -> dict[str, Digest]:
    return {relative: digest_file(root / relative) for relative in relatives}


def write_manifest(directory: Path, files: dict[str, Digest]) -> None:
    """Write `manifest.json` (written last by the one writer that gathered every digest)."""
    body = {"format": FORMAT, "format_version": FORMAT_VERSION, "block_bytes": BLOCK_BYTES,
            "files": dict(sorted(files.items()))}
    tmp = directory / f".{MANIFEST_FILE}.tmp"
    tmp.write_text(json.dumps(body, indent=1) + "\n")
    tmp.rename(directory / MANIFEST_FILE)  # never half a manifest


def seal(directory: Path) -> None:
    """Hash every file under `directory` and write its manifest: for a directory one writer made."""
    relatives = sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*")
                       if p.is_file() and p.name != MANIFEST_FILE)
    write_manifest(directory, digest_files(directory, relatives))


def merged(parts: list[dict[str, Any]], what: str) -> dict[str, Any]:
    """One map (file -> digest, or size) from several writers' maps; two writers of one file are an error."""
    files: dict[str, Any] = {}
    for part in parts:
        shared = files.keys() & part.keys()
        if shared:
            raise ManifestError(f"two writers of {what} wrote {sorted(shared)[0]}; nothing was published")
        files |= part
    return files


class Manifest:
    """The manifest of `directory`, and checks of its files against it. Blocks found intact are
    remembered, so a reader checks each block it reads once; `hashed_bytes` counts what was hashed."""

    def __init__(self, directory: Path, body: dict[str, Any]):
        self.directory = directory
        self.block_bytes: int = body["block_bytes"]
        self.files: dict[str, Digest] = body["files"]
        self.hashed_bytes = 0
        self._intact: set[tuple[str, int]] = set()
        # Called with (file, offset, length) before a block is read: fills a sparse local copy of
        # a remote artifact (s3.RangeReader) with the blocks a reader needs, and only those.
        self.fill: Callable[[str, int, int], None] | None = None

    def under(self, folder: str) -> "Manifest":
        """The entries of files under `folder`, named relative to it (a DCP state directory's)."""
        start = folder.rstrip("/") + "/"
        files = {name[len(start):]: digest for name, digest in self.files.items() if name.startswith(start)}
        return Manifest(self.directory / folder, {"block_bytes": self.block_bytes, "files": files})

    def digest(self, relative: str) -> Digest:
        if relative not in self.files:
            raise ManifestError(f"{self.directory / relative} is not in its {MANIFEST_FILE}; the directory is damaged")
        return self.files[relative]

    def check_sizes(self) -> None:
        """Every listed file is there with its size (a stat each, no reading)."""
        for relative, digest in self.files.items():
            path = self.directory / relative
            if not path.is_file():
                raise ManifestError(f"{path} is missing")
            if path.stat().st_size != digest["size"]:
                raise ManifestError(f"{path} is corrupt: {path.stat().st_size} bytes where its {MANIFEST_FILE} says"
                                    f" {digest['size']} (truncated or overwritten)")

    def verified_bytes(self, relative: str) -> bytes:
        """The whole file, read once and checked: parse these bytes, not a second read of the file."""
        digest = self.digest(relative)
        try:
            data = (self.directory / relative).read_bytes()
        except OSError as error:
            raise ManifestError(f"{self.directory / relative} is unreadable ({error.strerror})") from None
        self.hashed_bytes += len(data)
        if len(data) != digest["size"] or _sha256(data) != digest["sha256"]:
            raise self._corrupt(relative)
        return data

    def verify_range(self, relative: str, offset: int, length: int) -> None:
        """Check the blocks holding bytes [offset, offset + length) of the file."""
        digest = self.digest(relative)
        if offset < 0 or offset + length > digest["size"]:
            raise ManifestError(f"{self.directory / relative} is corrupt: a read of bytes {offset}-{offset + length}"
                                f" of its {digest['size']} (the file does not hold what its reader expects)")
        if length <= 0:
            return
        first, last = offset // self.block_bytes, (offset + length - 1) // self.block_bytes
        wanted = [i for i in range(first, last + 1) if (relative, i) not in self._intact]
        if not wanted:
            return
        if self.fill is not None:
            for index in wanted:
                start = index * self.block_bytes
                self.fill(relative, start, min(self.block_bytes, digest["size"] - start))
        with open(self.directory / relative, "rb") as stream:
            for index in wanted:
                stream.seek(index * self.block_bytes)
                block = stream.read(self.block_bytes)
                self.hashed_bytes += len(block)
                if _sha256(block) != digest["blocks"][index]:
                    raise self._corrupt(relative)
                self._intact.add((relative, index))

    def verify_file(self, relative: str) -> None:
        """Check every block of the file: for a reader of the whole file."""
        self.verify_range(relative, 0, self.digest(relative)["size"])

    def _corrupt(self, relative: str) -> ManifestError:
        return ManifestError(f"{self.directory / relative} is corrupt: its SHA-256 does not match {MANIFEST_FILE}")


def read_manifest(directory: Path) -> Manifest:
    """The manifest of `directory`, or ManifestError saying it is missing or unreadable."""
    path = directory / MANIFEST_FILE
    if not path.is_file():
        raise ManifestError(f"{path} is missing, so its files cannot be verified")
    try:
        body = json.loads(path.read_text())
        if body.get("format") != FORMAT or body.get("format_version") != FORMAT_VERSION:
            raise ValueError("not a llamaops manifest of this version")
        block_bytes = body["block_bytes"]
        if not isinstance(block_bytes, int) or block_bytes <= 0:
            raise ValueError("bad block size")
        for relative, digest in body["files"].items():
            if any(part in ("", ".", "..") for part in relative.split("/")):
                raise ValueError(f"unsafe path {relative!r}")
            if len(digest["blocks"]) != -(-digest["size"] // block_bytes):
                raise ValueError(f"{relative}: block hashes do not cover its size")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise ManifestError(f"{path} is unreadable or corrupt ({error})") from None
    return Manifest(directory, body)
