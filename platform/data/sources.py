"""Resolve DataConfig.sources (corpus names or file:// / s3:// URIs): check them all, then read them."""
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlparse

from .. import store
from .documents import DataError, Document
from .readers import (
    chatterbot_data_dir,
    fortunes_dir,
    read_chatterbot_corpus,
    read_cpython_stdlib,
    read_folder,
    read_fortunes,
    stdlib_dir,
)
from .report import Removed

# name -> (reader, a check that raises DataError when the corpus is not on this machine)
CORPORA: dict[str, tuple[Callable[[str], list[Document]], Callable[[], Path]]] = {
    "cpython-stdlib": (read_cpython_stdlib, stdlib_dir),
    "chatterbot-corpus": (read_chatterbot_corpus, chatterbot_data_dir),
    "fortunes": (read_fortunes, fortunes_dir),
}


def _file_path(uri: str) -> Path:
    return Path(unquote(urlparse(uri).path))


def check_sources(sources: list[str]) -> None:
    """Fail in one line on the first source that cannot be read, before anything is read."""
    for source in sources:
        if source.startswith("file://"):
            path = _file_path(source)
            if not path.exists():
                raise DataError(f"data source {source}: {path} does not exist")
        elif source.startswith("s3://"):
            try:
                complete = store.is_complete(source)
            except store.ArtifactError as error:
                raise DataError(f"data source {source}: {error}") from None
            if not complete:
                raise DataError(f"data source {source} is not a complete artifact (no {store.COMPLETE_MARKER} marker)")
        elif source not in CORPORA:
            known = ", ".join(sorted(CORPORA))
            raise DataError(f"unknown data source '{source}'; use one of {known}, or a file:// or s3:// URI")
        else:
            CORPORA[source][1]()


def read_source(source: str) -> tuple[list[Document], Removed]:
    """The source's documents, and the records skipped as unreadable with their reasons."""
    if source.startswith("file://"):
        return read_folder(_file_path(source), source)
    if source.startswith("s3://"):
        with store.fetched(source) as path:
            return read_folder(path, source)
    return CORPORA[source][0](source), []
