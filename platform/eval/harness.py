"""Run evaluation tasks on a model: per-item log-likelihoods, accuracy with standard errors, a report.

Accuracy ("acc") picks the choice with the highest summed log-likelihood, as lm-eval's `acc`;
"acc_norm" divides by the choice's token count. Standard errors are lm-eval's: the sample
standard deviation of the per-item scores over sqrt(n).
"""
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from llamaops.platform.model import Transformer
from llamaops.platform.tokenizer import Tokenizer

from .errors import EvalInputError
from .multiple_choice import argmax, encode_choices, score_continuations
from .tasks import TaskSpec, task_items


METRICS = ("acc", "acc_stderr", "acc_norm", "acc_norm_stderr", "chance")  # of every multiple-choice task


@dataclass
class ItemResult:
    log_likelihoods: list[float]  # per choice, summed over its tokens
    tokens: list[int]  # per choice
    answer: int
    predicted: int
    predicted_norm: int


@dataclass
class TaskResult:
    task: str
    kind: str
    metrics: dict[str, float]  # METRICS
    items: list[ItemResult] = field(repr=False)

    @property
    def size(self) -> int:
        return len(self.items)


def mean_and_stderr(values: Sequence[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(variance / n)


def load_eval_model(model_dir: Path) -> Transformer:
    """A llamaops checkpoint directory, or a Hugging Face Llama directory, as an fp32 model in eval mode."""
    from llamaops.platform.model.checkpoint import CONFIG_FILE, load_model
    from llamaops.platform.model.hf import load_hf

    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise EvalInputError(f"model {model_dir} is not found; pass a llamaops checkpoint or Hugging Face model directory")
    if (model_dir / CONFIG_FILE).is_file():
        return load_model(model_dir, dtype=torch.float32).eval()
    if (model_dir / "config.json").is_file():
        return load_hf(model_dir, dtype=torch.float32).eval()
    raise EvalInputError(f"{model_dir} has neither {CONFIG_FILE} nor config.json; it is not a model directory")


def evaluate_task(model: Transformer, tokenizer: Tokenizer, spec: TaskSpec) -> TaskResult:
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
    acc, acc_stderr = mean_and_stderr([float(r.predicted == r.answer) for r in results])
    norm, norm_stderr = mean_and_stderr([float(r.predicted_norm == r.answer) for r in results])
    chance = sum(1 / len(r.log_likelihoods) for r in results) / len(results)
    metrics = dict(zip(METRICS, (acc, acc_stderr, norm, norm_stderr, chance)))
    return TaskResult(spec.name, spec.kind, metrics, results)


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


def markdown_report(report: dict) -> str:
    lines = [
        f"# Evaluation of {report['model']}",
        "",
        "| task | items | acc | ± stderr | acc_norm | ± stderr | chance |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for task, m in report["tasks"].items():
        lines.append(
            f"| {task} | {m['items']} | {m['acc']:.4f} | {m['acc_stderr']:.4f} | {m['acc_norm']:.4f} |"
            f" {m['acc_norm_stderr']:.4f} | {m['chance']:.4f} |"
        )
    if gate := report.get("gate"):
        lines += ["", f"Gate: {'PASSED' if gate['passed'] else 'FAILED'}", ""]
        lines += [f"- {v['metric']} = {v['value']:.4f} {v['comparison']} {v['threshold']}: "
                  f"{'ok' if v['passed'] else 'FAILED'}" for v in gate["verdicts"]]
    return "\n".join(lines) + "\n"
