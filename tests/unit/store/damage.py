"""Damage done to an artifact's files by the tests of its manifest."""
from pathlib import Path


def overwrite_in_place(path: Path, offset: int, data: bytes) -> None:
    """Same-size damage: bytes replaced in place, the file's size unchanged."""
    size = path.stat().st_size
    with open(path, "r+b") as stream:
        stream.seek(offset)
        stream.write(data)
    assert path.stat().st_size == size
