"""Near-duplicate removal: MinHash signatures of word n-gram sets, LSH banding, clusters by union-find.

Two documents whose signatures agree in all rows of at least one band become candidates; a
candidate pair is a duplicate when the share of equal signature entries (the MinHash estimate of
the Jaccard similarity of their 5-gram sets) reaches the threshold; union-find joins the pairs
into clusters and each cluster keeps its first document. With b bands of r rows, pairs
at similarity s become candidates with probability 1 - (1 - s^r)^b.
"""
import functools
import hashlib
import itertools
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .documents import Document
from .report import Removed
from .shuffle import Record, map_reduce

SHINGLE_WORDS = 5  # the default n-gram size
_BLOCK = 4096  # shingles hashed at once, bounding memory to _BLOCK x permutations x 8 bytes


@functools.lru_cache(maxsize=1 << 20)
def _word_hash(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")


def shingle_hashes(text: str, ngram: int = SHINGLE_WORDS) -> np.ndarray:
    """Distinct 64-bit hashes of the document's lowercased word n-grams (one shingle if it is shorter)."""
    words = np.fromiter((_word_hash(w) for w in text.lower().split()), dtype=np.uint64)
    if len(words) == 0:
        return words
    width = min(ngram, len(words))
    count = len(words) - width + 1
    shingles = np.zeros(count, dtype=np.uint64)
    for offset in range(width):  # position-dependent mix, so word order matters
        shingles = shingles * np.uint64(0x9E3779B97F4A7C15) + words[offset : offset + count]
    return np.unique(shingles)


@dataclass(frozen=True)
class MinHasher:
    bands: int
    rows: int
    seed: int = 0

    @functools.cached_property
    def _coefficients(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        size = self.bands * self.rows
        multipliers = rng.integers(0, np.iinfo(np.uint64).max, size, dtype=np.uint64, endpoint=True) | np.uint64(1)
        offsets = rng.integers(0, np.iinfo(np.uint64).max, size, dtype=np.uint64, endpoint=True)
        return multipliers, offsets

    def signature(self, shingles: np.ndarray) -> np.ndarray:
        """Per permutation, the minimum of a*x+b (mod 2^64, then bit-mixed) over the shingles."""
        multipliers, offsets = self._coefficients
        signature = np.full(len(multipliers), np.iinfo(np.uint64).max, dtype=np.uint64)
        for start in range(0, len(shingles), _BLOCK):
            values = shingles[start : start + _BLOCK, None] * multipliers + offsets
            values ^= values >> np.uint64(29)  # multiply-add alone leaves weak low bits
            values *= np.uint64(0xBF58476D1CE4E5B9)
            values ^= values >> np.uint64(32)
            signature = np.minimum(signature, values.min(axis=0))
        return signature


    def signature_of(self, text: str, ngram: int = SHINGLE_WORDS) -> np.ndarray | None:
        """The text's signature, or None when it has no words."""
        shingles = shingle_hashes(text, ngram)
        return self.signature(shingles) if len(shingles) else None


def _band_keys(index: int, signature: np.ndarray | None, rows: int) -> list[Record]:
    if signature is None:
        return []
    return [(band.to_bytes(4, "little") + signature[band * rows : (band + 1) * rows].tobytes(), index)
            for band in range(len(signature) // rows)]


def _bucket_pairs(records: list[Record]) -> Iterable[tuple[int, int]]:
    """Every pair of documents sharing an LSH bucket (records come sorted by bucket, index)."""
    for _, group in itertools.groupby(records, key=lambda record: record[0]):
        yield from itertools.combinations([index for _, index in group], 2)


def duplicate_clusters(pairs: Iterable[tuple[int, int]], count: int) -> list[int]:
    """Union-find over the duplicate pairs; each document's root is the smallest index of its cluster."""
    parent = list(range(count))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in pairs:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return [root(i) for i in range(count)]


def drop_near_duplicates(
    documents: list[Document],
    threshold: float,
    bands: int,
    rows: int,
    seed: int = 0,
    ngram: int = SHINGLE_WORDS,
    signatures: list[np.ndarray | None] | None = None,
    workers: int = 1,
) -> tuple[list[Document], Removed]:
    """Documents in a bucket of any band whose signatures agree on >= `threshold` of the entries
    are duplicates; each cluster of duplicates keeps its first document. The band buckets are
    hash-partitioned across `workers`; the clusters do not depend on how many.
    `signatures` (one per document, e.g. computed on workers) skip hashing here."""
    hasher = MinHasher(bands, rows, seed)
    if signatures is None:
        signatures = [hasher.signature_of(doc.text, ngram) for doc in documents]
    candidates = set(map_reduce(signatures, functools.partial(_band_keys, rows=rows), _bucket_pairs, workers))
    pairs = [(a, b) for a, b in sorted(candidates) if np.mean(signatures[a] == signatures[b]) >= threshold]
    roots = duplicate_clusters(pairs, len(documents))
    kept = [doc for i, doc in enumerate(documents) if roots[i] == i]
    return kept, [(doc, "near_duplicate") for i, doc in enumerate(documents) if roots[i] != i]
