"""Heuristic quality filters; each document gets the reason of the first rule it breaks."""
import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from .documents import CODE_LANGUAGES, Document

_WORD = re.compile(r"\w+")
# A short English list of explicit words, in the spirit of the C4 "bad words" list; other languages
# bring theirs through DataConfig.language_rules.
DIRTY_WORDS = frozenset(
    "fuck fucking fucked shit bitch cunt cock dick pussy porn porno xxx nude nudes slut whore horny"
    " milf blowjob handjob cumshot anal dildo orgasm".split()
)


@dataclass(frozen=True)
class QualityRules:
    min_chars: int
    max_chars: int
    min_alphanumeric_fraction: float
    max_duplicate_line_fraction: float
    max_duplicate_ngram_fraction: float | None = None
    duplicate_ngram_words: int = 5
    max_dirty_word_fraction: float | None = None
    max_symbol_word_ratio: float | None = None
    dirty_words: frozenset[str] = DIRTY_WORDS


@dataclass(frozen=True)
class LanguageRoutes:
    """The per-language branches: each listed language's rules, and the rules of every other language."""

    default: QualityRules
    by_language: dict[str, QualityRules]

    def rules_for(self, language: str | None) -> QualityRules:
        return self.by_language.get(language or "", self.default)


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


def duplicate_ngram_fraction(text: str, n: int) -> float:
    """Share of words covered by a word n-gram that occurs more than once (Gopher's repetition measure)."""
    words = text.split()
    if len(words) < n:
        return 0.0
    counts = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    covered = bytearray(len(words))
    for i in range(len(words) - n + 1):
        if counts[tuple(words[i : i + n])] > 1:
            covered[i : i + n] = b"\x01" * n
    return sum(covered) / len(words)


def dirty_word_fraction(text: str, dirty_words: frozenset[str] = DIRTY_WORDS) -> float:
    words = _WORD.findall(text.lower())
    return sum(word in dirty_words for word in words) / len(words) if words else 0.0


def symbol_word_ratio(text: str) -> float:
    """'#' and ellipses per word: high in tag clouds, lists of truncated links and spam."""
    words = len(text.split())
    return (text.count("#") + text.count("...") + text.count("\u2026")) / words if words else 0.0


def first_failed_rule(doc: Document, rules: QualityRules) -> str | None:
    checks: list[tuple[str, Callable[[str], bool]]] = [
        ("too_short", lambda t: len(t) < rules.min_chars),
        ("too_long", lambda t: len(t) > rules.max_chars),
        ("low_alphanumeric_fraction", lambda t: alphanumeric_fraction(t) < rules.min_alphanumeric_fraction),
        ("many_duplicate_lines", lambda t: duplicate_line_fraction(t) > rules.max_duplicate_line_fraction),
    ]
    if doc.language in CODE_LANGUAGES:  # the prose rules below misjudge code (comments use '#', loops repeat)
        return next((reason for reason, fails in checks if fails(doc.text)), None)
    if rules.max_duplicate_ngram_fraction is not None:
        limit, n = rules.max_duplicate_ngram_fraction, rules.duplicate_ngram_words
        checks.append(("many_duplicate_ngrams", lambda t: duplicate_ngram_fraction(t, n) > limit))
    if rules.max_dirty_word_fraction is not None:
        checks.append(("dirty_words", lambda t: dirty_word_fraction(t, rules.dirty_words) > rules.max_dirty_word_fraction))
    if rules.max_symbol_word_ratio is not None:
        checks.append(("many_symbols", lambda t: symbol_word_ratio(t) > rules.max_symbol_word_ratio))
    return next((reason for reason, fails in checks if fails(doc.text)), None)


def routed_failed_rule(doc: Document, routes: LanguageRoutes) -> str | None:
    """The first rule of the document's language branch that it breaks."""
    return first_failed_rule(doc, routes.rules_for(doc.language))
