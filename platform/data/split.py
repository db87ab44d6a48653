"""Deterministic per-document keys: the order documents are packed in, and train/validation membership.

Keys hash the document text with the seed, so the same corpus and seed always give the same
shards, and a document (or an exact copy of it) always lands in the same split.
"""
import hashlib

from .documents import Document
from .report import Removed

_KEY_SPACE = float(1 << 64)


def document_key(purpose: str, seed: int, doc: Document) -> float:
    """A uniform number in [0, 1) fixed by purpose, seed and the document's identity."""
    payload = f"{purpose}\0{seed}\0{doc.source}\0{doc.id}\0{doc.text}".encode("utf-8")
    return int.from_bytes(hashlib.blake2b(payload, digest_size=8).digest(), "little") / _KEY_SPACE


def sample_per_source(documents: list[Document], limit: int | None, seed: int) -> tuple[list[Document], Removed]:
    """At most `limit` documents of each source, a uniform pseudo-random choice, in reading order."""
    if limit is None:
        return documents, []
    chosen: set[int] = set()
    for source in dict.fromkeys(doc.source for doc in documents):
        members = [i for i, doc in enumerate(documents) if doc.source == source]
        members.sort(key=lambda i: document_key("sample", seed, documents[i]))
        chosen.update(members[:limit])
    kept = [doc for i, doc in enumerate(documents) if i in chosen]
    removed = [(doc, "over_source_document_cap") for i, doc in enumerate(documents) if i not in chosen]
    return kept, removed


def shuffle_and_cap_tokens(
    documents: list[Document], max_tokens: int | None, seed: int
) -> tuple[list[Document], Removed]:
    """Shuffle (so every window mixes sources), then keep whole documents while they fit in max_tokens."""
    ordered = sorted(documents, key=lambda doc: document_key("order", seed, doc))
    if max_tokens is None:
        return ordered, []
    kept, removed, total = [], [], 0
    for doc in ordered:
        if total + len(doc.tokens) > max_tokens:
            removed.append((doc, "over_token_cap"))
        else:
            kept.append(doc)
            total += len(doc.tokens)
    return kept, removed


def split_train_validation(
    documents: list[Document], validation_fraction: float, seed: int
) -> tuple[list[Document], list[Document]]:
    train, validation = [], []
    for doc in documents:
        (validation if document_key("split", seed, doc) < validation_fraction else train).append(doc)
    return train, validation
