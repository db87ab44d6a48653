"""Exact de-duplication: the first document with a given normalized text wins."""
import hashlib

from .documents import Document
from .report import Removed


def text_hash(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def drop_exact_duplicates(documents: list[Document]) -> tuple[list[Document], Removed]:
    seen: set[bytes] = set()
    kept, removed = [], []
    for doc in documents:
        digest = text_hash(doc.text)
        if digest in seen:
            removed.append((doc, "exact_duplicate"))
        else:
            seen.add(digest)
            kept.append(doc)
    return kept, removed
