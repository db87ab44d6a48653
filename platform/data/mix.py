"""Data mix: keep whole documents so each category holds its weight's share of the tokens.

The paper's final pre-training mix is about 50% general knowledge, 25% mathematical and
reasoning, 17% code and 8% multilingual tokens. With a fixed corpus the largest mix it supports
is limited by the scarcest category relative to its weight; the other categories are downsampled
(a seeded random choice of documents) to match. Categories with weight but no documents are left
out and the remaining weights renormalized.
"""
from collections import defaultdict

from .documents import CODE_LANGUAGES, Document
from .report import Removed
from .split import document_key


def category_of(doc: Document, source_categories: dict[str, str]) -> str:
    if doc.source in source_categories:
        return source_categories[doc.source]
    if doc.language in CODE_LANGUAGES:
        return "code"
    if doc.language not in (None, "en", "unknown"):
        return "multilingual"
    return "general"


def mix_by_category(
    documents: list[Document], weights: dict[str, float], source_categories: dict[str, str], seed: int
) -> tuple[list[Document], Removed]:
    groups: dict[str, list[Document]] = defaultdict(list)
    for doc in documents:
        groups[category_of(doc, source_categories)].append(doc)
    present = {category: w for category, w in weights.items() if w > 0 and groups.get(category)}
    if not present:
        return [], [(doc, "category_not_in_mix") for doc in documents]
    total_weight = sum(present.values())
    available = {category: sum(len(doc.tokens) for doc in groups[category]) for category in present}
    budget = min(available[c] / (w / total_weight) for c, w in present.items())
    chosen: set[int] = set()
    for category, weight in present.items():
        target, taken = budget * weight / total_weight, 0
        for doc in sorted(groups[category], key=lambda d: document_key("mix", seed, d)):
            if taken + len(doc.tokens) > target * 1.0000001 and taken > 0:
                continue
            chosen.add(id(doc))
            taken += len(doc.tokens)
    kept = [doc for doc in documents if id(doc) in chosen]
    removed = [
        (doc, "mix_downsampled" if category_of(doc, source_categories) in present else "category_not_in_mix")
        for doc in documents
        if id(doc) not in chosen
    ]
    return kept, removed
