import numpy as np

from llamaops.platform.data.dedup import drop_exact_duplicates
from llamaops.platform.data.documents import Document
from llamaops.platform.data.near_dedup import MinHasher, drop_near_duplicates, shingle_hashes

VOCABULARY = [f"w{i}" for i in range(5000)]


def random_text(seed: int, words: int = 400) -> str:
    rng = np.random.default_rng(seed)
    return " ".join(rng.choice(VOCABULARY, words))


def edited(text: str, every: int) -> str:
    words = text.split()
    return " ".join("changed" if i % every == 0 else w for i, w in enumerate(words))


def test_exact_dedup_keeps_first_copy():
    docs = [Document("a", "same", "s"), Document("b", "other", "s"), Document("c", "same", "t")]
    kept, removed = drop_exact_duplicates(docs)
    assert [d.id for d in kept] == ["a", "b"]
    assert [(d.id, r) for d, r in removed] == [("c", "exact_duplicate")]


def test_minhash_estimates_jaccard_of_word_5grams():
    a, b = random_text(1), edited(random_text(1), every=40)
    sa, sb = set(shingle_hashes(a).tolist()), set(shingle_hashes(b).tolist())
    true_jaccard = len(sa & sb) / len(sa | sb)
    hasher = MinHasher(bands=32, rows=8, seed=0)
    estimate = np.mean(hasher.signature(shingle_hashes(a)) == hasher.signature(shingle_hashes(b)))
    assert 0.6 < true_jaccard < 0.9
    assert abs(estimate - true_jaccard) < 0.1


def test_near_copies_are_removed_and_distinct_documents_kept():
    base = random_text(1)
    docs = [
        Document("original", base, "s"),
        Document("distinct", random_text(2), "s"),
        Document("near_copy", edited(base, every=100), "s"),  # ~4 of 400 words changed
        Document("case_copy", base.upper(), "s"),
        Document("far_edit", edited(base, every=3), "s"),  # every third word changed: a different text
        Document("short", "hello world", "s"),
        Document("no_words", "", "s"),
    ]
    kept, removed = drop_near_duplicates(docs, threshold=0.8, bands=16, rows=8)
    assert [d.id for d in kept] == ["original", "distinct", "far_edit", "short", "no_words"]
    assert [(d.id, r) for d, r in removed] == [("near_copy", "near_duplicate"), ("case_copy", "near_duplicate")]


def test_word_order_matters():
    words = random_text(3).split()
    reversed_text = " ".join(reversed(words))
    kept, _ = drop_near_duplicates([Document("a", " ".join(words), "s"), Document("b", reversed_text, "s")], 0.8, 16, 8)
    assert len(kept) == 2
