"""Language identification with langid.py, whose model ships inside the PyPI package (offline)."""
import numpy as np

from .documents import Document

IDENTIFY_CHARS = 2000  # langid's features saturate long before; bounds the cost of huge documents


_model = None  # langid's LanguageIdentifier, built once per process


def _identifier():
    global _model
    if _model is None:
        from langid.langid import LanguageIdentifier, model

        _model = LanguageIdentifier.from_modelstring(model, norm_probs=False)  # ~3 s: decompress and unpickle
    return _model


class ShippedModel:
    """Carried in a step's arguments so that langid's model reaches Ray workers as its decoded arrays
    (milliseconds to unpickle) instead of being rebuilt in each worker process from langid's
    compressed model string (about 3 s each)."""

    def __reduce__(self):
        m = _identifier()
        return _install, ((m.nb_ptc, m.nb_pc, m.nb_numfeats, m.nb_classes, m.tk_nextmove, m.tk_output),)


def _install(parts: tuple) -> ShippedModel:
    global _model
    if _model is None:
        from langid.langid import LanguageIdentifier

        _model = LanguageIdentifier(*parts, norm_probs=False)
    return ShippedModel()


def identify_language(text: str) -> str:
    """ISO 639-1 code of the most likely of langid's 97 languages (langid's own classify, made sparse:
    a document hits a few dozen of the 7,480 features, so only those rows of the model are summed)."""
    model = _identifier()
    counts = model.instance2fv(text[:IDENTIFY_CHARS])
    hit = np.flatnonzero(counts)
    scores = model.nb_pc + counts[hit].astype(np.float32) @ model.nb_ptc[hit]
    return model.nb_classes[int(np.argmax(scores))]


def language_reason(
    doc: Document, identify: bool, allowed: frozenset[str] | None, model: ShippedModel | None = None
) -> str | None:
    """Fill in an unknown language, then the removal reason when it is not one of `allowed`.
    `model` only carries langid's model to the process this runs in."""
    if doc.language is None and identify:
        doc.language = identify_language(doc.text)
    if allowed is not None and (doc.language or "unknown") not in allowed:
        return "language_not_kept"
    return None
