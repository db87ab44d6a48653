"""Run evaluation tasks on a model: metrics with standard errors per task, and a report.

Multiple choice: accuracy ("acc") picks the choice with the highest summed log-likelihood, as
lm-eval's `acc`; "acc_norm" divides by the choice's token count. Generation tasks: see
generation_task. Standard errors are lm-eval's: the sample standard deviation of the per-item
scores over sqrt(n).
"""
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from llamaops.platform.model import Transformer
from llamaops.platform.tokenizer import Tokenizer

from .errors import EvalInputError
from .generation_task import METRICS as GENERATION_METRICS
from .generation_task import evaluate_generation
from .multiple_choice import argmax, encode_choices, score_continuations
from .results import TaskResult, mean_and_stderr
from .tasks import GenerationTask, MultipleChoiceTask, task_items

__all__ = ["TaskResult", "mean_and_stderr", "evaluate_task", "load_eval_model", "results_report", "markdown_report"]

MULTIPLE_CHOICE_METRICS = ("acc", "acc_stderr", "acc_norm", "acc_norm_stderr", "chance")
METRICS = {"multiple_choice": MULTIPLE_CHOICE_METRICS, "generation": GENERATION_METRICS}  # by task kind
HEADLINE = {"multiple_choice": ("acc", "acc_norm"), "generation": ("exact_match",)}  # compared with a baseline


@dataclass
class ItemResult:
    log_likelihoods: list[float]  # per choice, summed over its tokens
    tokens: list[int]  # per choice
    answer: int
    predicted: int
    predicted_norm: int


def load_eval_model(reference: str | Path, tracking_uri: str | None = None) -> Transformer:
    """The model `reference` names (platform/tracking/model_reference.py) in fp32, in eval mode."""
    from llamaops.platform.model.hf import load_model_or_hf
    from llamaops.platform.tracking.model_reference import model_directory

    with model_directory(str(reference), tracking_uri) as directory:
        return load_model_or_hf(directory, torch.float32).eval()


def evaluate_task(model: Transformer, tokenizer: Tokenizer, spec: MultipleChoiceTask | GenerationTask) -> TaskResult:
    if isinstance(spec, GenerationTask):
        return evaluate_generation(model, tokenizer, spec)
    return evaluate_multiple_choice(model, tokenizer, spec)


def evaluate_multiple_choice(model: Transformer, tokenizer: Tokenizer, spec: MultipleChoiceTask) -> TaskResult:
    items = task_items(spec)
    results = []
    for item in items:
        context, continuations = encode_choices(tokenizer, item.context, item.continuations)
        if len(context) + max(map(len, continuations)) > model.cfg.max_seq_len:
            raise EvalInputError(
                f"task {spec.name}: an item of {len(context) + max(map(len, continuations))} tokens exceeds the "
                f"model's max_seq_len {model.cfg.max_seq_len}; lower num_fewshot or pick shorter items"
            )
        scores = score_continuations(model, context, continuations)
        sums = [s.log_likelihood for s in scores]
        normalised = [s.normalised for s in scores]
        results.append(ItemResult(sums, [s.tokens for s in scores], item.answer, argmax(sums), argmax(normalised)))
    per_item = {"acc": [float(r.predicted == r.answer) for r in results],
                "acc_norm": [float(r.predicted_norm == r.answer) for r in results]}
    acc, acc_stderr = mean_and_stderr(per_item["acc"])
    norm, norm_stderr = mean_and_stderr(per_item["acc_norm"])
    chance = sum(1 / len(r.log_likelihoods) for r in results) / len(results)
    metrics = dict(zip(MULTIPLE_CHOICE_METRICS, (acc, acc_stderr, norm, norm_stderr, chance)))
    return TaskResult(spec.name, spec.kind, metrics, results, per_item)


def results_report(model: str, results: list[TaskResult], gate: dict | None = None, with_items: bool = False) -> dict:
    report: dict = {
        "model": model,
        "tasks": {r.task: {"kind": r.kind, "items": r.size, **r.metrics} for r in results},
    }
    if gate is not None:
        report["gate"] = gate
    if with_items:
        report["items"] = {r.task: [asdict(i) for i in r.items] for r in results}
    return report


# The metric columns of each kind's table; a metric's standard error follows it as "± stderr".
_COLUMNS = {"multiple_choice": ("acc", "acc_norm", "chance"), "generation": ("exact_match", "extracted")}


def markdown_report(report: dict) -> str:
    lines = [f"# Evaluation of {report['model']}"]
    for kind, columns in _COLUMNS.items():
        tasks = {task: m for task, m in report["tasks"].items() if m["kind"] == kind}
        if not tasks:
            continue
        shown = [name for metric in columns for name in (metric, f"{metric}_stderr") if name in next(iter(tasks.values()))]
        headers = ["± stderr" if name.endswith("_stderr") else name for name in shown]
        lines += ["", "| task | items | " + " | ".join(headers) + " |", "|---|---:|" + "---:|" * len(shown)]
        lines += [f"| {task} | {m['items']} | " + " | ".join(_number(m[name]) for name in shown) + " |"
                  for task, m in tasks.items()]
    if compared := report.get("compare"):
        lines += ["", f"## Compared with {compared['baseline']}", ""]
        if "skipped" in compared:
            lines.append(f"Not compared: {compared['skipped']}")
        else:
            lines += ["| task | metric | model | baseline | delta | ± stderr |", "|---|---|---:|---:|---:|---:|"]
            lines += [f"| {task} | {metric} | " + " | ".join(_number(d[k]) for k in ("model", "baseline", "delta", "delta_stderr")) + " |"
                      for task, deltas in compared["tasks"].items() for metric, d in deltas.items()]
    if gate := report.get("gate"):
        lines += ["", f"Gate: {'PASSED' if gate['passed'] else 'FAILED'}", ""]
        lines += [f"- {v['metric']} = {_number(v['value'])} {v['comparison']} {v['threshold']}: "
                  f"{'ok' if v['passed'] else 'FAILED'}" for v in gate["verdicts"]]
    return "\n".join(lines) + "\n"


def _number(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
