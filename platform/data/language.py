"""Language identification with langid.py, whose model ships inside the PyPI package (offline)."""
import functools

import numpy as np

from .documents import Document

IDENTIFY_CHARS = 2000  # langid's features saturate long before; bounds the cost of huge documents


@functools.lru_cache(maxsize=1)
def _identifier():
    from langid.langid import LanguageIdentifier, model

    return LanguageIdentifier.from_modelstring(model, norm_probs=False)


def identify_language(text: str) -> str:
    """ISO 639-1 code of the most likely of langid's 97 languages (langid's own classify, made sparse:
    a document hits a few dozen of the 7,480 features, so only those rows of the model are summed)."""
    model = _identifier()
    counts = model.instance2fv(text[:IDENTIFY_CHARS])
    hit = np.flatnonzero(counts)
    scores = model.nb_pc + counts[hit].astype(np.float32) @ model.nb_ptc[hit]
    return model.nb_classes[int(np.argmax(scores))]


def language_reason(doc: Document, identify: bool, allowed: frozenset[str] | None) -> str | None:
    """Fill in an unknown language, then the removal reason when it is not one of `allowed`."""
    if doc.language is None and identify:
        doc.language = identify_language(doc.text)
    if allowed is not None and (doc.language or "unknown") not in allowed:
        return "language_not_kept"
    return None
