import numpy as np

from llamaops.platform.data.documents import Document
from llamaops.platform.data.mix import category_of, mix_by_category
from llamaops.platform.data.outliers import drop_token_outliers, token_kl

PAPER_MIX = {"general": 0.50, "math_reasoning": 0.25, "code": 0.17, "multilingual": 0.08}


def doc(i: int, source: str, language: str | None, tokens: int) -> Document:
    return Document(f"{source}-{i}", f"text {source} {i}", source, language, tokens=[1] * tokens)


def corpus() -> list[Document]:
    docs = [doc(i, "web", "en", 100) for i in range(100)]  # 10,000 tokens
    docs += [doc(i, "math", "en", 100) for i in range(100)]
    docs += [doc(i, "stdlib", "python", 100) for i in range(100)]
    docs += [doc(i, "wiki-de", "de", 100) for i in range(100)]
    return docs


def test_categories_come_from_source_names_then_language():
    mapping = {"math": "math_reasoning"}
    assert [category_of(d, mapping) for d in corpus()[::100]] == ["general", "math_reasoning", "code", "multilingual"]


def test_paper_mix_proportions_are_met_by_whole_documents():
    docs = corpus()
    kept, removed = mix_by_category(docs, PAPER_MIX, {"math": "math_reasoning"}, seed=0)
    tokens = {c: sum(len(d.tokens) for d in kept if category_of(d, {"math": "math_reasoning"}) == c) for c in PAPER_MIX}
    total = sum(tokens.values())
    # General is the scarcest relative to its weight: all of it is kept, the rest downsampled to match.
    assert tokens["general"] == 10_000 and total == 20_000
    for category, weight in PAPER_MIX.items():
        assert abs(tokens[category] / total - weight) < 0.01
    assert {r for _, r in removed} == {"mix_downsampled"} and len(kept) + len(removed) == len(docs)
    again, _ = mix_by_category(corpus(), PAPER_MIX, {"math": "math_reasoning"}, seed=0)
    assert [d.id for d in again] == [d.id for d in kept]  # deterministic given the seed
    other, _ = mix_by_category(corpus(), PAPER_MIX, {"math": "math_reasoning"}, seed=1)
    assert [d.id for d in other] != [d.id for d in kept]


def test_missing_categories_renormalize_and_unmixed_ones_are_dropped():
    docs = [doc(i, "web", "en", 10) for i in range(10)] + [doc(i, "stdlib", "python", 10) for i in range(10)]
    kept, removed = mix_by_category(docs, {"general": 0.5, "math_reasoning": 0.5}, {}, seed=0)
    assert len(kept) == 10 and {r for _, r in removed} == {"category_not_in_mix"}


def test_token_kl_flags_documents_made_of_rare_tokens():
    rng = np.random.default_rng(0)
    docs = [Document(str(i), "", "s", tokens=list(rng.integers(0, 50, 200))) for i in range(150)]
    blob = Document("blob", "", "s", tokens=list(rng.integers(10_000, 10_050, 200)))
    docs.insert(70, blob)
    kl = token_kl(docs)
    assert kl.argmax() == 70
    kept, removed = drop_token_outliers(docs, max_zscore=4.0, min_documents=100)
    assert [(d.id, r) for d, r in removed] == [("blob", "token_distribution_outlier")] and len(kept) == 150
    assert drop_token_outliers(docs, max_zscore=4.0, min_documents=1000) == (docs, [])  # too few to judge


def test_token_kl_is_the_kl_of_each_document_from_the_smoothed_corpus():
    from collections import Counter

    rng = np.random.default_rng(1)
    docs = [Document(str(i), "", "s", tokens=np.asarray(rng.integers(0, 300, rng.integers(1, 80)), dtype=np.uint32))
            for i in range(40)]  # fmt: skip
    corpus = Counter(int(t) for d in docs for t in d.tokens)
    total = sum(count + 0.5 for count in corpus.values())
    expected = []
    for d in docs:
        counts = Counter(int(t) for t in d.tokens)
        expected.append(sum(n / len(d.tokens) * np.log((n / len(d.tokens)) / ((corpus[t] + 0.5) / total))
                            for t, n in counts.items()))  # fmt: skip
    np.testing.assert_allclose(token_kl(docs), expected, rtol=1e-12, atol=1e-12)
