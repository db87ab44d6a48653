"""Token-distribution outliers: documents whose token unigram distribution is far from the corpus's.

KL(document || corpus) is large for documents made of tokens the rest of the corpus rarely uses
(encoded blobs, tables of numbers, another script in a monolingual corpus). A document is an
outlier when its KL lies more than `max_zscore` standard deviations above the corpus mean.
"""
import numpy as np

from .documents import Document
from .report import Removed
from .steps import map_items


def _negative_entropy(tokens: np.ndarray) -> float:
    """sum_t p(t) log p(t) over the document's unigram distribution: the part of its KL that needs
    no corpus statistic, so it runs on the workers (the sort in np.unique is most of the cost)."""
    _, counts = np.unique(tokens, return_counts=True)
    p = counts / len(tokens)
    return float(np.dot(p, np.log(p)))


def token_kl(documents: list[Document], workers: int = 1) -> np.ndarray:
    """KL(p_doc || p_corpus) in nats for each document (each needs tokens), the corpus smoothed so no
    token of it has zero mass. KL = sum_t p log p - mean over the document's positions of log p_corpus."""
    lengths = np.array([len(doc.tokens) for doc in documents])
    tokens = np.concatenate([np.asarray(doc.tokens, dtype=np.int64) for doc in documents])
    corpus = np.bincount(tokens).astype(np.float64)  # integer counts: exact in any order
    present = corpus > 0
    corpus[present] += 0.5
    log_corpus = np.zeros_like(corpus)
    log_corpus[present] = np.log(corpus[present] / corpus[present].sum())
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    cross = np.add.reduceat(log_corpus[tokens], starts) / lengths
    return np.array(map_items(_negative_entropy, [doc.tokens for doc in documents], workers)) - cross


def drop_token_outliers(
    documents: list[Document], max_zscore: float | None, min_documents: int, workers: int = 1
) -> tuple[list[Document], Removed]:
    with_tokens = [doc for doc in documents if len(doc.tokens)]
    if max_zscore is None or len(with_tokens) < min_documents:
        return documents, []
    kl = token_kl(with_tokens, workers)
    limit = kl.mean() + max_zscore * kl.std()
    outliers = {id(doc) for doc, value in zip(with_tokens, kl) if value > limit}
    return (
        [doc for doc in documents if id(doc) not in outliers],
        [(doc, "token_distribution_outlier") for doc in documents if id(doc) in outliers],
    )
