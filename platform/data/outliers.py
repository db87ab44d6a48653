"""Token-distribution outliers: documents whose token unigram distribution is far from the corpus's.

KL(document || corpus) is large for documents made of tokens the rest of the corpus rarely uses
(encoded blobs, tables of numbers, another script in a monolingual corpus). A document is an
outlier when its KL lies more than `max_zscore` standard deviations above the corpus mean.
"""
import numpy as np

from .documents import Document
from .report import Removed


def token_kl(documents: list[Document]) -> np.ndarray:
    """KL(p_doc || p_corpus) in nats for each document, the corpus smoothed so no token has zero mass."""
    lengths = np.array([len(doc.tokens) for doc in documents])
    tokens = np.concatenate([np.asarray(doc.tokens, dtype=np.int64) for doc in documents])
    vocabulary, inverse = np.unique(tokens, return_inverse=True)
    corpus = np.bincount(inverse).astype(np.float64) + 0.5
    log_corpus = np.log(corpus / corpus.sum())
    doc_of_token = np.repeat(np.arange(len(documents)), lengths)
    # Count (document, token) pairs once: p_doc(t) = n(d, t) / len(d).
    pairs, counts = np.unique(doc_of_token * len(vocabulary) + inverse, return_counts=True)
    doc, token = np.divmod(pairs, len(vocabulary))
    p = counts / lengths[doc]
    return np.bincount(doc, weights=p * (np.log(p) - log_corpus[token]), minlength=len(documents))


def drop_token_outliers(documents: list[Document], max_zscore: float | None, min_documents: int) -> tuple[list[Document], Removed]:
    with_tokens = [doc for doc in documents if len(doc.tokens)]
    if max_zscore is None or len(with_tokens) < min_documents:
        return documents, []
    kl = token_kl(with_tokens)
    limit = kl.mean() + max_zscore * kl.std()
    outliers = {id(doc) for doc, value in zip(with_tokens, kl) if value > limit}
    return (
        [doc for doc in documents if id(doc) not in outliers],
        [(doc, "token_distribution_outlier") for doc in documents if id(doc) in outliers],
    )
