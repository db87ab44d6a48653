"""SHA-256 manifests (store/manifest.py): a reader of a byte range hashes only the blocks holding
it; a manifest naming a path outside its directory, or whose block hashes do not cover a file, is
refused; two writers of one file are an error."""
import json
from pathlib import Path

import pytest

from llamaops.platform.store import manifest as manifests
from llamaops.platform.store.manifest import MANIFEST_FILE, ManifestError, merged, read_manifest, seal

from .damage import overwrite_in_place


@pytest.fixture
def sealed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(manifests, "BLOCK_BYTES", 100)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "data.bin").write_bytes(bytes(range(250)))
    (tmp_path / "small.json").write_text("{}")
    seal(tmp_path)
    return tmp_path


def test_a_range_read_hashes_only_its_blocks_once(sealed: Path):
    manifest = read_manifest(sealed)
    assert len(manifest.files["sub/data.bin"]["blocks"]) == 3
    overwrite_in_place(sealed / "sub" / "data.bin", 240, b"x")  # the last block only
    manifest.verify_range("sub/data.bin", 120, 60)
    manifest.verify_range("sub/data.bin", 150, 10)  # already checked: not hashed again
    assert manifest.hashed_bytes == 100
    with pytest.raises(ManifestError, match="data.bin is corrupt"):
        manifest.verify_range("sub/data.bin", 199, 2)
    with pytest.raises(ManifestError, match="bytes 200-260 of its 250"):
        manifest.verify_range("sub/data.bin", 200, 60)
    assert manifest.under("sub").files.keys() == {"data.bin"}
    assert manifest.verified_bytes("small.json") == b"{}"


@pytest.mark.parametrize("edit", ["outside", "blocks"])
def test_a_manifest_that_does_not_fit_its_directory_is_refused(sealed: Path, edit: str):
    body = json.loads((sealed / MANIFEST_FILE).read_text())
    if edit == "outside":
        body["files"]["../x"] = body["files"].pop("small.json")
    else:
        body["files"]["sub/data.bin"]["blocks"].pop()
    (sealed / MANIFEST_FILE).write_text(json.dumps(body))
    with pytest.raises(ManifestError, match="unreadable or corrupt"):
        read_manifest(sealed)


def test_two_writers_of_one_file_are_an_error():
    with pytest.raises(ManifestError, match="two writers of run wrote a"):
        merged([{"a": {}}, {"b": {}}, {"a": {}}], "run")
