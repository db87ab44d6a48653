"""De-duplication by URL, by exact text (the first document wins), and of lines repeated across documents."""
import hashlib
from collections import Counter

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


def drop_duplicate_urls(documents: list[Document]) -> tuple[list[Document], Removed]:
    """The first document of each URL wins; documents without a URL are kept."""
    seen: set[str] = set()
    kept, removed = [], []
    for doc in documents:
        if doc.url is not None and doc.url in seen:
            removed.append((doc, "duplicate_url"))
        else:
            if doc.url is not None:
                seen.add(doc.url)
            kept.append(doc)
    return kept, removed


def drop_repeated_lines(
    documents: list[Document], max_repeats: int | None, bucket_documents: int, skip_languages: frozenset[str]
) -> tuple[list[Document], Removed]:
    """Remove every non-blank line found in more than `max_repeats` documents of its bucket of
    consecutive documents (navigation, cookie banners, templates); documents left empty are dropped.
    Code is skipped: its short lines repeat by nature."""
    if max_repeats is None:
        return documents, []
    kept, removed = [], []
    for start in range(0, len(documents), bucket_documents):
        bucket = [doc for doc in documents[start : start + bucket_documents] if doc.language not in skip_languages]
        seen_in = Counter(line for doc in bucket for line in {line.strip() for line in doc.text.split("\n")} if line)
        repeated = {line for line, count in seen_in.items() if count > max_repeats}
        for doc in documents[start : start + bucket_documents]:
            if repeated and doc.language not in skip_languages:
                doc.text = "\n".join(line for line in doc.text.split("\n") if line.strip() not in repeated)
            if doc.text.strip():
                kept.append(doc)
            else:
                removed.append((doc, "only_repeated_lines"))
    return kept, removed
