"""Language identification with langid.py, whose model ships inside the PyPI package (offline)."""
import functools

from .documents import Document

IDENTIFY_CHARS = 2000  # langid's features saturate long before; bounds the cost of huge documents


@functools.lru_cache(maxsize=1)
def _identifier():
    from langid.langid import LanguageIdentifier, model

    return LanguageIdentifier.from_modelstring(model, norm_probs=False)


def identify_language(text: str) -> str:
    """ISO 639-1 code of the most likely of langid's 97 languages."""
    return _identifier().classify(text[:IDENTIFY_CHARS])[0]


def language_reason(doc: Document, identify: bool, allowed: frozenset[str] | None) -> str | None:
    """Fill in an unknown language, then the removal reason when it is not one of `allowed`."""
    if doc.language is None and identify:
        doc.language = identify_language(doc.text)
    if allowed is not None and (doc.language or "unknown") not in allowed:
        return "language_not_kept"
    return None
