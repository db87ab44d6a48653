"""Publish a local directory all at once: write into a temp sibling, then rename it into place."""
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replace_directory(dst: Path) -> Iterator[Path]:
    """Yield an empty temp directory next to `dst`; when the block succeeds it becomes `dst`.

    On failure the temp directory is removed and `dst` is untouched. An existing `dst` is moved
    aside before the rename and deleted only after it, so a crash in between leaves either the
    old or the new directory in place, never neither.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".{dst.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        if dst.is_dir():
            old = dst.parent / f".{dst.name}.old-{uuid.uuid4().hex[:8]}"
            dst.rename(old)
            tmp.rename(dst)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(dst)  # a file at dst fails here, and stays
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
