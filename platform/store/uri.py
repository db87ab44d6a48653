"""Reading and publishing artifact directories by URI (file:// here; s3:// in s3.py)."""
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlparse

from .atomic import replace_directory

COMPLETE_MARKER = "_COMPLETE"


class ArtifactError(ValueError):
    """An artifact URI is malformed, unreachable, or its artifact is missing or unfinished."""


def local_path(uri: str) -> Path:
    """The filesystem path of a file:// (or bare absolute) artifact URI."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "" and uri.startswith("/"):
        return Path(uri)
    raise ArtifactError(f"unsupported artifact URI '{uri}'; use file:///absolute/path or s3://bucket/prefix")


def check_access(uri: str) -> None:
    """Preflight before any compute: a malformed URI, or an unusable S3 endpoint, credentials or bucket."""
    if uri.startswith("s3://"):
        from . import s3

        s3.check_s3_access(uri)
        return
    local_path(uri)


def is_complete(uri: str) -> bool:
    if uri.startswith("s3://"):
        from . import s3

        return s3.is_complete(uri)
    return (local_path(uri) / COMPLETE_MARKER).is_file()


@contextmanager
def fetched(uri: str) -> Iterator[Path]:
    """A local directory holding the complete artifact at `uri` (downloaded first for s3://)."""
    if uri.startswith("s3://"):
        from . import s3

        with s3.fetched(uri) as path:
            yield path
        return
    path = local_path(uri)
    if not (path / COMPLETE_MARKER).is_file():
        what = "does not exist" if not path.exists() else "is unfinished (no completion marker)"
        raise ArtifactError(f"artifact {uri} {what}; run the stage that produces it first")
    yield path


@contextmanager
def opened_in_part(uri: str, large: Callable[[str], bool]) -> Iterator[tuple[Path, Callable[[str, int, int], None] | None]]:
    """(a local directory of the complete artifact at `uri`, a filler): a local artifact as it is
    (no filler); an s3:// one with its `large` files sparse, the filler fetching (file, offset,
    length) ranges into them on demand (s3.opened_in_part): what a reader of parts of a model uses."""
    if uri.startswith("s3://"):
        from . import s3

        with s3.opened_in_part(uri, large) as (path, reader):
            yield path, reader
        return
    with fetched(uri) as path:
        yield path, None


def check_output(uri: str, overwrite: bool = False) -> None:
    """Preflight for a destination, before any compute: refuse a destination that a publish would
    have to destroy without llamaops having made it (a file, or a non-empty directory with no
    completion marker: `-o ~` must never wipe a home directory), and a complete artifact unless
    `overwrite`."""
    if uri.startswith("s3://"):
        check_access(uri)
        if not overwrite and is_complete(uri):
            raise ArtifactError(f"artifact {uri} already exists; write to a new URI")
        return
    final = local_path(uri)
    if final.exists() and not final.is_dir():
        raise ArtifactError(f"output {final} is a file; give a new or empty directory instead")
    if (final / COMPLETE_MARKER).is_file():
        if not overwrite:
            raise ArtifactError(f"artifact {uri} already exists; write to a new URI")
    elif final.is_dir() and any(final.iterdir()):
        raise ArtifactError(f"output {final} is a non-empty directory that llamaops did not write (no "
                            f"{COMPLETE_MARKER} marker); nothing was changed: give a new or empty directory")


@contextmanager
def staged_output(uri: str, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty local directory; on success publish it to `uri` with its completion marker.

    On failure nothing is published and a previous complete artifact at `uri` is left untouched.
    """
    if uri.startswith("s3://"):
        from . import s3

        with s3.staged_output(uri, overwrite) as path:
            yield path
        return
    check_output(uri, overwrite)
    with replace_directory(local_path(uri)) as tmp:
        yield tmp
        (tmp / COMPLETE_MARKER).write_text("")
