"""The data-prep stage: sources -> cleaned, de-duplicated, filtered, tokenized, mixed, split shards."""
import json
from typing import Any

from llamaops.platform.stage import MetricsSink, NoMetrics, StageResult

from ..config import Preset
from ..config.stages import DataConfig
from ..store import ArtifactError, check_output, staged_output
from ..tokenizer import load_tokenizer
from .documents import DataError, Document
from .pipeline import prepare
from .report import PrepReport, by_language, by_source_and_language
from .shards import write_meta, write_split
from .sources import check_sources
from .split import split_train_validation
from .timings import driver_phase

REPORT_FILE = "report.json"
TOKENIZER_NAME = "llama3"


def run_data_prep(preset: Preset, output_uri: str, metrics: MetricsSink = NoMetrics()) -> StageResult:
    return prepare_data(preset.data, output_uri, metrics, workers=preset.data.workers)


def prepare_data(data: DataConfig, output_uri: str, metrics: MetricsSink = NoMetrics(), workers: int = 1) -> StageResult:
    """Read, clean, de-duplicate, filter, tokenize and mix `data.sources` into train/validation shards."""
    with driver_phase("other"):  # whatever no inner phase claims: checks, tokenizer load, the report
        return _prepare_data(data, output_uri, metrics, workers)


def _prepare_data(data: DataConfig, output_uri: str, metrics: MetricsSink, workers: int) -> StageResult:
    try:
        check_output(output_uri)
    except ArtifactError as exc:
        raise DataError(str(exc)) from None
    check_sources(data.sources + data.quality_reference_sources)
    report = PrepReport()
    tokenized, documents = prepare(data, load_tokenizer(), report, workers)
    train, validation = split_train_validation(documents, data.validation_fraction, data.seed)
    _check_not_empty(tokenized, train, validation, report)

    with driver_phase("write_shards"), staged_output(output_uri) as out:
        counts = {
            "train": write_split(out, "train", (doc.tokens for doc in train)),
            "validation": write_split(out, "validation", (doc.tokens for doc in validation)),
        }
        write_meta(out, TOKENIZER_NAME, counts)
        summary = _summary(report, documents, counts)
        (out / REPORT_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    stage_metrics = _metrics(report, counts, summary)
    return StageResult(outputs={"shards": output_uri}, metrics=stage_metrics, report=summary)


def _check_not_empty(tokenized: int, train: list[Document], validation: list[Document], report: PrepReport) -> None:
    if not train or not validation:
        removed = {reason: c["documents"] for s in report.steps for reason, c in s["removed"].items()}
        raise DataError(
            f"{tokenized} documents left {len(train)} for training and {len(validation)} for validation"
            f" (removed: {removed or 'none'}); add data, loosen the filters or change validation_fraction"
        )


def _summary(report: PrepReport, after: list[Document], counts: dict) -> dict[str, Any]:
    return {
        "tokenizer": TOKENIZER_NAME,
        "documents_in": report.steps[0]["in"]["documents"],
        "documents_out": report.steps[-1]["out"]["documents"],
        "tokens_out": report.steps[-1]["out"]["tokens"],
        "steps": report.steps,
        "splits": counts,
        "by_source_in": report.by_source_in,
        "by_source_out": by_source_and_language(after),
        "by_language": by_language(report.steps, after),
    }


def _metrics(report: PrepReport, counts: dict, summary: dict[str, Any]) -> dict[str, float]:
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
    for language, row in summary["by_language"].items():
        values[f"language_{language}_documents_out"] = row["documents_out"]
        values[f"language_{language}_tokens_out"] = row["tokens_out"]
    return {name: float(value) for name, value in values.items()}
