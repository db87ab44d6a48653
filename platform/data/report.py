"""Counts of documents, characters and tokens in and out of each step, with removal reasons."""
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

from .documents import Document
from .timings import driver_phase

Removed = list[tuple[Document, str]]  # a dropped document and the reason it was dropped
Step = Callable[[list[Document]], tuple[list[Document], Removed]]


def by_source_and_language(documents: list[Document]) -> dict[str, dict[str, dict[str, int]]]:
    """{source: {language: {"documents": n, "tokens": n}}}; unknown languages count as "unknown"."""
    table: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    for doc in documents:
        cell = table[doc.source][doc.language or "unknown"]
        cell["documents"] += 1
        cell["tokens"] += len(doc.tokens)
    return {source: {lang: dict(cell) for lang, cell in langs.items()} for source, langs in table.items()}


def by_language(steps: list[dict[str, Any]], kept: list[Document]) -> dict[str, dict[str, Any]]:
    """Per language branch: documents in and out, tokens out, and documents removed per reason.
    A document removed before language id counts under its reader's language, or "unknown"."""
    table: dict[str, dict[str, Any]] = defaultdict(lambda: {"documents_in": 0, "documents_out": 0, "tokens_out": 0,
                                                            "removed": Counter()})  # fmt: skip
    for step in steps:
        for reason, counts in step["removed"].items():
            for language, documents in counts["by_language"].items():
                table[language]["removed"][reason] += documents
                table[language]["documents_in"] += documents
    for doc in kept:
        row = table[doc.language or "unknown"]
        row["documents_in"] += 1
        row["documents_out"] += 1
        row["tokens_out"] += len(doc.tokens)
    return {language: {**row, "removed": dict(sorted(row["removed"].items()))} for language, row in sorted(table.items())}


class PrepReport:
    """The step-by-step ledger of one data-prep run."""

    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []
        self.by_source_in: dict[str, dict[str, dict[str, int]]] = {}  # as tokenized, before corpus-level steps

    def run(self, name: str, step: Step, documents: list[Document]) -> list[Document]:
        """Apply `step`, record its counts in and out and per removal reason, and return the kept documents."""
        with driver_phase(name):
            kept, removed = step(documents)
            self.record(name, documents, kept, removed)
        return kept

    def record(self, name: str, before: list[Document], after: list[Document], removed: Removed = ()) -> None:
        dropped = [(doc, reason, (len(doc.text), len(doc.tokens))) for doc, reason in removed]
        self.record_sizes(name, _sizes(before), _sizes(after), dropped)

    def record_sizes(
        self,
        name: str,
        before: list[tuple[int, int]],
        after: list[tuple[int, int]],
        removed: list[tuple[Document, str, tuple[int, int]]],
    ) -> None:
        """Record a step from the (chars, tokens) of the documents in and out, and of each removed one as it entered."""
        reasons: dict[str, dict[str, Any]] = {}
        for doc, reason, (chars, tokens) in removed:
            counts = reasons.setdefault(
                reason, {"documents": 0, "chars": 0, "tokens": 0, "by_source": Counter(), "by_language": Counter()}
            )
            counts["documents"] += 1
            counts["chars"] += chars
            counts["tokens"] += tokens
            counts["by_source"][doc.source] += 1
            counts["by_language"][doc.language or "unknown"] += 1
        for counts in reasons.values():
            counts["by_source"] = dict(counts["by_source"])
            counts["by_language"] = dict(sorted(counts["by_language"].items()))
        self.steps.append(
            {"step": name, "in": _totals(before), "out": _totals(after), "removed": dict(sorted(reasons.items()))}
        )


def _sizes(documents: list[Document]) -> list[tuple[int, int]]:
    return [(len(doc.text), len(doc.tokens)) for doc in documents]


def _totals(sizes: list[tuple[int, int]]) -> dict[str, int]:
    return {"documents": len(sizes), "chars": sum(c for c, _ in sizes), "tokens": sum(t for _, t in sizes)}
