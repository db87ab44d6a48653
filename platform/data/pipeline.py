"""The data-prep steps in order, built from DataConfig: read -> clean -> language id -> dedup -> per-language filters -> tokenize -> mix.

Per-document steps run fused (in-process or on Ray Data, see steps.py). URL, exact, line and
near de-duplication are hash-partitioned map-reduces (shuffle.py): each partition de-duplicates
its keys on a worker, so the result is exact and identical for any number of workers. Token
outliers split their per-document part (workers) from the corpus statistic (driver); the mix and
the split need the whole corpus and run on the driver.
"""
import functools

import numpy as np

from ..config.stages import DataConfig, LanguageRules
from ..tokenizer import Tokenizer
from .clean import remove_boilerplate_lines, repair_mojibake
from .dedup import drop_duplicate_urls, drop_exact_duplicates, drop_repeated_lines
from .documents import CODE_LANGUAGES, DataError, Document
from .filters import DIRTY_WORDS, LanguageRoutes, QualityRules, routed_failed_rule
from .language import ShippedModel, language_reason
from .mix import mix_by_category
from .near_dedup import MinHasher, drop_near_duplicates
from .normalize import normalize_text
from .outliers import drop_token_outliers
from .pii import scrub_pii
from .quality import QualityClassifier
from .report import PrepReport, Removed, by_source_and_language
from .sources import read_source
from .split import sample_per_source, shuffle_and_cap_tokens
from .steps import DocumentStep, map_items, run_document_steps
from .timings import driver_phase

QUALITY_SAMPLE_CHARS = 5000  # the classifier scores the start of a document


def read_sources(sources: list[str], report: PrepReport) -> list[Document]:
    """Every source's documents; unreadable records are counted in the report's `read` step."""
    documents: list[Document] = []
    skipped: Removed = []
    for source in sources:
        found, bad = read_source(source)
        if not found and not bad:
            raise DataError(f"data source {source} holds no documents (folders need .txt, .md, .jsonl or .parquet files)")
        documents.extend(found)
        skipped.extend(bad)
    report.record("read", documents + [doc for doc, _ in skipped], documents, skipped)
    return documents


def clean_check(data: DataConfig, doc: Document) -> str | None:
    if doc.text and max(map(len, doc.text.split("\n"))) > data.max_line_chars:
        return "huge_line"
    text = repair_mojibake(doc.text) if data.repair_mojibake else doc.text
    text = normalize_text(text)
    if data.remove_boilerplate_lines:
        text = normalize_text(remove_boilerplate_lines(text))
    doc.text = text
    return None if text.strip() else "empty"


def pii_check(doc: Document) -> None:
    doc.text, _ = scrub_pii(doc.text)


_RULE_SETTINGS = (
    "min_chars", "max_chars", "min_alphanumeric_fraction", "max_duplicate_line_fraction", "max_duplicate_ngram_fraction",
    "duplicate_ngram_words", "max_dirty_word_fraction", "max_symbol_word_ratio",
)


def _quality_rules(data: DataConfig, own: LanguageRules | None = None) -> QualityRules:
    """The filter thresholds of one language branch: its own settings, DataConfig's for the rest."""
    def setting(name: str):
        value = getattr(own, name, None)
        return getattr(data, name) if value is None else value

    dirty_words = frozenset(own.dirty_words) if own is not None and own.dirty_words is not None else DIRTY_WORDS
    return QualityRules(*(setting(name) for name in _RULE_SETTINGS), dirty_words=dirty_words)


def language_routes(data: DataConfig) -> LanguageRoutes:
    return LanguageRoutes(
        _quality_rules(data), {language: _quality_rules(data, own) for language, own in data.language_rules.items()}
    )


def quality_model(data: DataConfig) -> QualityClassifier | None:
    if not data.quality_reference_sources:
        return None
    reference = [doc.text[:QUALITY_SAMPLE_CHARS] for doc in read_sources(data.quality_reference_sources, PrepReport())]
    return QualityClassifier.train(reference, seed=data.seed)


def quality_check(model: QualityClassifier, data: DataConfig, doc: Document) -> str | None:
    if doc.language in CODE_LANGUAGES:
        return None  # trained on prose: it has no opinion on code
    own = data.language_rules.get(doc.language or "")
    threshold = own.min_quality_score if own is not None and own.min_quality_score is not None else data.min_quality_score
    return "low_quality_score" if model.scores([doc.text[:QUALITY_SAMPLE_CHARS]])[0] < threshold else None


def tokenize_check(tokenizer: Tokenizer, doc: Document) -> None:
    # A uint32 array, not a list: Ray moves and pickles it as one buffer instead of a million ints.
    doc.tokens = np.asarray(tokenizer.encode(doc.text, bos=True, eos=True), dtype=np.uint32)


def prepare(data: DataConfig, tokenizer: Tokenizer, report: PrepReport, workers: int = 1) -> tuple[int, list[Document]]:
    """Run every step on the configured sources; returns the documents tokenized and the documents kept."""
    with driver_phase("read"):
        documents = read_sources(data.sources, report)
    sample = functools.partial(sample_per_source, limit=data.max_documents_per_source, seed=data.seed)
    documents = report.run("sample", sample, documents)
    cleaning = [DocumentStep("clean", functools.partial(clean_check, data))]
    if data.scrub_pii:
        cleaning.append(DocumentStep("scrub_pii", pii_check))
    # Language id comes first so every later step, and the report, knows each document's branch.
    allowed = frozenset(data.languages) if data.languages is not None else None
    shipped = ShippedModel() if data.identify_languages and workers > 1 else None
    identify = functools.partial(language_reason, identify=data.identify_languages, allowed=allowed, model=shipped)
    cleaning.append(DocumentStep("language", identify))
    documents = run_document_steps(cleaning, documents, report, workers)
    if data.dedup_urls:
        documents = report.run("url_dedup", functools.partial(drop_duplicate_urls, workers=workers), documents)
    documents = report.run("exact_dedup", functools.partial(drop_exact_duplicates, workers=workers), documents)
    repeated = functools.partial(
        drop_repeated_lines,
        max_repeats=data.max_line_repeats,
        bucket_documents=data.line_dedup_bucket_documents,
        skip_languages=CODE_LANGUAGES,
        workers=workers,
    )
    documents = report.run("line_dedup", repeated, documents)

    filtering = [DocumentStep("quality_filters", functools.partial(routed_failed_rule, routes=language_routes(data)))]
    model = quality_model(data)
    if model is not None:
        filtering.append(DocumentStep("quality_classifier", functools.partial(quality_check, model, data)))
    filtering.append(DocumentStep("tokenize", functools.partial(tokenize_check, tokenizer)))
    documents = run_document_steps(filtering, documents, report, workers)
    tokenized = len(documents)
    report.by_source_in = by_source_and_language(documents)

    hasher = MinHasher(data.minhash_bands, data.minhash_rows, data.seed)
    texts = [doc.text for doc in documents]  # only the text travels to the workers
    with driver_phase("minhash_signatures"):
        signatures = map_items(functools.partial(hasher.signature_of, ngram=data.minhash_ngram), texts, workers)
    near = functools.partial(
        drop_near_duplicates,
        threshold=data.near_duplicate_jaccard,
        bands=data.minhash_bands,
        rows=data.minhash_rows,
        seed=data.seed,
        ngram=data.minhash_ngram,
        signatures=signatures,
        workers=workers,
    )
    documents = report.run("near_dedup", near, documents)
    outliers = functools.partial(
        drop_token_outliers, max_zscore=data.max_token_kl_zscore, min_documents=data.token_kl_min_documents,
        workers=workers,
    )
    documents = report.run("token_outliers", outliers, documents)
    if data.mix != "none":
        weights = data.pretrain_mix if data.mix == "pretrain" else data.anneal_mix
        mix = functools.partial(mix_by_category, weights=weights, source_categories=data.source_categories, seed=data.seed)
        documents = report.run(f"{data.mix}_mix", mix, documents)
    cap = functools.partial(shuffle_and_cap_tokens, max_tokens=data.max_tokens, seed=data.seed)
    documents = report.run("shuffle_and_cap", cap, documents)
    return tokenized, documents

