"""De-duplication by URL, by exact text (the first document wins), and of lines repeated across documents.

Each runs as a hash-partitioned map-reduce (shuffle.py): records keyed by URL, text hash or
(bucket, line) meet in one partition, so the result is exact and the same for any number of workers.
"""
import dataclasses
import functools
import itertools
from collections.abc import Iterable

from .documents import Document
from .report import Removed
from .shuffle import Record, key_hash, map_reduce


def later_copies(records: list[Record]) -> Iterable[int]:
    """Per key, the indices after the first: the copies to drop (records come sorted by key, index)."""
    for _, group in itertools.groupby(records, key=lambda record: record[0]):
        yield from (index for _, index in itertools.islice(group, 1, None))


def _split(documents: list[Document], drop: set[int], reason: str) -> tuple[list[Document], Removed]:
    kept = [doc for i, doc in enumerate(documents) if i not in drop]
    return kept, [(doc, reason) for i, doc in enumerate(documents) if i in drop]


def _text_key(index: int, text: str) -> list[Record]:
    return [(key_hash(text), index)]


def _url_key(index: int, url: str | None) -> list[Record]:
    return [(key_hash(url), index)] if url is not None else []


def drop_exact_duplicates(documents: list[Document], workers: int = 1) -> tuple[list[Document], Removed]:
    drop = set(map_reduce([doc.text for doc in documents], _text_key, later_copies, workers))
    return _split(documents, drop, "exact_duplicate")


def drop_duplicate_urls(documents: list[Document], workers: int = 1) -> tuple[list[Document], Removed]:
    """The first document of each URL wins; documents without a URL are kept."""
    drop = set(map_reduce([doc.url for doc in documents], _url_key, later_copies, workers))
    return _split(documents, drop, "duplicate_url")


def _line_keys(index: int, item: tuple[str, bool], bucket_documents: int) -> list[Record]:
    text, skipped = item
    if skipped:
        return []
    bucket = (index // bucket_documents).to_bytes(8, "little")
    lines = {line.strip() for line in text.split("\n")} - {""}
    return [(bucket + key_hash(line), (index, line)) for line in lines]


def _repeated_lines(records: list[Record], max_repeats: int) -> Iterable[tuple[int, str]]:
    """(document index, line) for each line found in more than `max_repeats` documents of its bucket."""
    for _, group in itertools.groupby(records, key=lambda record: record[0]):
        holders = [value for _, value in group]
        if len(holders) > max_repeats:
            yield from holders


def drop_repeated_lines(
    documents: list[Document], max_repeats: int | None, bucket_documents: int, skip_languages: frozenset[str],
    workers: int = 1,
) -> tuple[list[Document], Removed]:
    """Remove every non-blank line found in more than `max_repeats` documents of its bucket of
    consecutive documents (navigation, cookie banners, templates); documents left empty are dropped.
    Code is skipped: its short lines repeat by nature."""
    if max_repeats is None:
        return documents, []
    items = [(doc.text, doc.language in skip_languages) for doc in documents]
    keys = functools.partial(_line_keys, bucket_documents=bucket_documents)
    repeated: dict[int, set[str]] = {}
    for index, line in map_reduce(items, keys, functools.partial(_repeated_lines, max_repeats=max_repeats), workers):
        repeated.setdefault(index, set()).add(line)
    # New documents, not edits in place: the report measures the documents as they came in.
    edited = list(documents)
    for index, lines in repeated.items():
        text = "\n".join(line for line in documents[index].text.split("\n") if line.strip() not in lines)
        edited[index] = dataclasses.replace(documents[index], text=text)
    empty = {i for i in repeated if not edited[i].text.strip()}
    return [doc for i, doc in enumerate(edited) if i not in empty], [(documents[i], "only_repeated_lines") for i in sorted(empty)]
