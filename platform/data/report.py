"""Counts of documents, characters and tokens in and out of each step, with removal reasons."""
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

from .documents import Document

Removed = list[tuple[Document, str]]  # a dropped document and the reason it was dropped
Step = Callable[[list[Document]], tuple[list[Document], Removed]]


def totals(documents: list[Document]) -> dict[str, int]:
    return {
        "documents": len(documents),
        "chars": sum(len(doc.text) for doc in documents),
        "tokens": sum(len(doc.tokens) for doc in documents),
    }


def by_source_and_language(documents: list[Document]) -> dict[str, dict[str, dict[str, int]]]:
    """{source: {language: {"documents": n, "tokens": n}}}; unknown languages count as "unknown"."""
    table: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    for doc in documents:
        cell = table[doc.source][doc.language or "unknown"]
        cell["documents"] += 1
        cell["tokens"] += len(doc.tokens)
    return {source: {lang: dict(cell) for lang, cell in langs.items()} for source, langs in table.items()}


class PrepReport:
    """The step-by-step ledger of one data-prep run."""

    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []

    def run(self, name: str, step: Step, documents: list[Document]) -> list[Document]:
        """Apply `step`, record its counts in and out and per removal reason, and return the kept documents."""
        kept, removed = step(documents)
        reasons: dict[str, dict[str, Any]] = {}
        for doc, reason in removed:
            counts = reasons.setdefault(reason, {"documents": 0, "chars": 0, "tokens": 0, "by_source": Counter()})
            counts["documents"] += 1
            counts["chars"] += len(doc.text)
            counts["tokens"] += len(doc.tokens)
            counts["by_source"][doc.source] += 1
        for counts in reasons.values():
            counts["by_source"] = dict(counts["by_source"])
        self.record(name, documents, kept, dict(sorted(reasons.items())))
        return kept

    def record(self, name: str, before: list[Document], after: list[Document], removed: dict | None = None) -> None:
        self.steps.append({"step": name, "in": totals(before), "out": totals(after), "removed": removed or {}})
