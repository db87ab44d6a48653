"""Heuristic quality filters; each document gets the reason of the first rule it breaks."""
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from .documents import Document
from .report import Removed


@dataclass(frozen=True)
class QualityRules:
    min_chars: int
    max_chars: int
    min_alphanumeric_fraction: float
    max_duplicate_line_fraction: float


def alphanumeric_fraction(text: str) -> float:
    """Share of non-space characters that are letters, combining marks or digits (any script)."""
    # Classify each distinct character once: a document has few distinct characters but many characters.
    counts = Counter(text)
    visible = sum(n for ch, n in counts.items() if not ch.isspace())
    if not visible:
        return 0.0
    return sum(n for ch, n in counts.items() if unicodedata.category(ch)[0] in "LMN") / visible


def duplicate_line_fraction(text: str) -> float:
    """Share of non-blank lines that repeat an earlier line of the same document (boilerplate, spam)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return 1.0 - len(set(lines)) / len(lines) if lines else 0.0


def first_failed_rule(doc: Document, rules: QualityRules) -> str | None:
    checks: list[tuple[str, Callable[[str], bool]]] = [
        ("too_short", lambda t: len(t) < rules.min_chars),
        ("too_long", lambda t: len(t) > rules.max_chars),
        ("low_alphanumeric_fraction", lambda t: alphanumeric_fraction(t) < rules.min_alphanumeric_fraction),
        ("many_duplicate_lines", lambda t: duplicate_line_fraction(t) > rules.max_duplicate_line_fraction),
    ]
    return next((reason for reason, fails in checks if fails(doc.text)), None)


def apply_quality_filters(documents: list[Document], rules: QualityRules) -> tuple[list[Document], Removed]:
    kept, removed = [], []
    for doc in documents:
        reason = first_failed_rule(doc, rules)
        if reason is None:
            kept.append(doc)
        else:
            removed.append((doc, reason))
    return kept, removed
