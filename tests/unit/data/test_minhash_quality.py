"""MinHash + LSH quality on a corpus with injected near-duplicates whose true similarity is known."""
import numpy as np

from llamaops.platform.config import load_preset
from llamaops.platform.data.documents import Document
from llamaops.platform.data.near_dedup import drop_near_duplicates, shingle_hashes

VOCABULARY = np.array([f"v{i}" for i in range(20_000)])


def jaccard(a: str, b: str, ngram: int) -> float:
    x, y = set(shingle_hashes(a, ngram).tolist()), set(shingle_hashes(b, ngram).tolist())
    return len(x & y) / len(x | y)


def near_copy(words: list[str], rng: np.random.Generator) -> list[str]:
    """A light edit: a few words replaced, a short tail cut or a short header added."""
    words = list(words)
    kind = rng.integers(3)
    if kind == 0:
        for i in rng.choice(len(words), 2, replace=False):
            words[i] = "edited"
    elif kind == 1:
        words = words[: len(words) - int(rng.integers(1, 10))]
    else:
        words = ["Posted", "by", "admin", "today:"] + words
    return words


def test_near_duplicate_recall_and_precision_at_the_configured_threshold():
    data = load_preset("tiny").data
    rng = np.random.default_rng(7)
    originals = [list(rng.choice(VOCABULARY, 300)) for _ in range(800)]
    docs = [Document(f"orig{i}", " ".join(w), "s") for i, w in enumerate(originals)]
    injected = set()
    for i in rng.choice(len(originals), 300, replace=False):
        docs.append(Document(f"dup{i}", " ".join(near_copy(originals[i], rng)), "s"))
        injected.add(f"dup{i}")
    # Hard negatives: share half their text with an original (Jaccard ~0.33): must be kept.
    for i in rng.choice(len(originals), 100, replace=False):
        docs.append(Document(f"half{i}", " ".join(originals[i][:150] + list(rng.choice(VOCABULARY, 150))), "s"))
    by_id = {d.id: d.text for d in docs}
    true_similarity = {d: jaccard(by_id[d], by_id["orig" + d[3:]], data.minhash_ngram) for d in injected}
    assert min(true_similarity.values()) >= data.near_duplicate_jaccard  # the ground truth is above threshold

    kept, removed = drop_near_duplicates(
        docs, data.near_duplicate_jaccard, data.minhash_bands, data.minhash_rows, data.seed, data.minhash_ngram
    )
    found = {d.id for d, _ in removed}
    recall = len(found & injected) / len(injected)
    precision = len(found & injected) / len(found)
    print(f"near-dup recall {recall:.3f} precision {precision:.3f} ({len(found)} removed, {len(injected)} injected)")
    assert recall >= 0.95 and precision >= 0.99
