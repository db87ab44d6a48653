"""The data-prep stage: sources -> sampled, normalized, tokenized, de-duplicated, filtered, split shards."""
import functools
import json
from typing import Any

from ..config import Preset
from ..stage import MetricsSink, NoMetrics, StageResult
from ..store import is_complete, staged_output
from ..tokenizer import load_tokenizer
from .dedup import drop_exact_duplicates
from .documents import DataError, Document
from .encode import tokenize_documents
from .filters import QualityRules, apply_quality_filters
from .near_dedup import drop_near_duplicates
from .normalize import normalize_documents
from .report import PrepReport, by_source_and_language
from .shards import write_meta, write_split
from .sources import check_sources, read_source
from .split import sample_per_source, shuffle_and_cap_tokens, split_train_validation

REPORT_FILE = "report.json"
TOKENIZER_NAME = "llama3"


def run_data_prep(preset: Preset, output_uri: str, metrics: MetricsSink = NoMetrics()) -> StageResult:
    data = preset.data
    if is_complete(output_uri):
        raise DataError(f"artifact {output_uri} already exists; write the shards to a new URI")
    check_sources(data.sources)
    documents = _read_all(data.sources)
    tokenizer = load_tokenizer()
    report = PrepReport()
    report.record("read", documents, documents)
    rules = QualityRules(
        data.min_chars, data.max_chars, data.min_alphanumeric_fraction, data.max_duplicate_line_fraction
    )
    sample = functools.partial(sample_per_source, limit=data.max_documents_per_source, seed=data.seed)
    documents = report.run("sample", sample, documents)
    documents = report.run("normalize", normalize_documents, documents)
    tokenized = report.run("tokenize", functools.partial(tokenize_documents, tokenizer=tokenizer), documents)
    cleaning = [
        ("exact_dedup", drop_exact_duplicates),
        ("quality_filters", functools.partial(apply_quality_filters, rules=rules)),
        ("near_dedup", functools.partial(drop_near_duplicates, threshold=data.near_duplicate_jaccard,
                                         bands=data.minhash_bands, rows=data.minhash_rows, seed=data.seed)),
        ("shuffle_and_cap", functools.partial(shuffle_and_cap_tokens, max_tokens=data.max_tokens, seed=data.seed)),
    ]
    documents = tokenized
    for name, step in cleaning:
        documents = report.run(name, step, documents)
    train, validation = split_train_validation(documents, data.validation_fraction, data.seed)
    _check_not_empty(len(tokenized), train, validation, report)

    with staged_output(output_uri) as out:
        counts = {
            "train": write_split(out, "train", (doc.tokens for doc in train)),
            "validation": write_split(out, "validation", (doc.tokens for doc in validation)),
        }
        write_meta(out, TOKENIZER_NAME, counts)
        summary = _summary(report, tokenized, documents, counts)
        (out / REPORT_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    stage_metrics = _metrics(report, counts)
    metrics.log_metrics(stage_metrics)
    return StageResult(outputs={"shards": output_uri}, metrics=stage_metrics, report=summary)


def _read_all(sources: list[str]) -> list[Document]:
    documents = []
    for source in sources:
        found = read_source(source)
        if not found:
            raise DataError(f"data source {source} holds no documents (folders need .txt, .md or .jsonl files)")
        documents.extend(found)
    return documents


def _check_not_empty(tokenized: int, train: list[Document], validation: list[Document], report: PrepReport) -> None:
    if not train or not validation:
        removed = {reason: c["documents"] for s in report.steps for reason, c in s["removed"].items()}
        raise DataError(
            f"{tokenized} documents left {len(train)} for training and {len(validation)} for validation"
            f" (removed: {removed or 'none'}); add data, loosen the filters or change validation_fraction"
        )


def _summary(report: PrepReport, before: list[Document], after: list[Document], counts: dict) -> dict[str, Any]:
    return {
        "tokenizer": TOKENIZER_NAME,
        "steps": report.steps,
        "splits": counts,
        "by_source_in": by_source_and_language(before),
        "by_source_out": by_source_and_language(after),
    }


def _metrics(report: PrepReport, counts: dict) -> dict[str, float]:
    first, last = report.steps[0], report.steps[-1]
    values = {
        "documents_in": first["in"]["documents"],
        "chars_in": first["in"]["chars"],
        "tokens_in": next(step["out"]["tokens"] for step in report.steps if step["step"] == "tokenize"),
        "documents_out": last["out"]["documents"],
        "tokens_out": last["out"]["tokens"],
        "train_documents": counts["train"]["documents"],
        "train_tokens": counts["train"]["tokens"],
        "validation_documents": counts["validation"]["documents"],
        "validation_tokens": counts["validation"]["tokens"],
    }
    for step in report.steps:
        for reason, removed in step["removed"].items():
            values[f"removed_documents_{reason}"] = removed["documents"]
    return {name: float(value) for name, value in values.items()}
