"""Comparison with a baseline model, usually the registry's production version: both models'
headline metrics per task, the delta and its standard error, and the relative gate.

Both models answer the same items, so the delta's standard error is the paired one: the standard
error of the mean per-item difference (smaller than combining two independent errors when the
models agree on many items).
"""
from dataclasses import dataclass

from .gate import Verdict, verdict
from .results import TaskResult, mean_and_stderr


@dataclass(frozen=True)
class Delta:
    model: float
    baseline: float
    delta: float  # model - baseline
    delta_stderr: float


def compare_results(results: list[TaskResult], baseline: list[TaskResult]) -> dict[str, dict[str, Delta]]:
    """task -> headline metric -> Delta, for tasks both runs measured on the same items."""
    by_task = {r.task: r for r in baseline}
    comparison: dict[str, dict[str, Delta]] = {}
    for result in results:
        other = by_task[result.task]
        deltas = {}
        for metric, scores in result.scores.items():
            theirs = other.scores[metric]
            if len(theirs) != len(scores):
                raise ValueError(f"task {result.task}: {len(scores)} items against the baseline's {len(theirs)}")
            delta, stderr = mean_and_stderr([a - b for a, b in zip(scores, theirs)])
            deltas[metric] = Delta(result.metrics[metric], other.metrics[metric], delta, stderr)
        comparison[result.task] = deltas
    return comparison


def delta_metrics(comparison: dict[str, dict[str, Delta]]) -> dict[str, float]:
    """Flat names for tracking and gates: TASK.METRIC.baseline, .delta and .delta_stderr."""
    flat = {}
    for task, deltas in comparison.items():
        for metric, d in deltas.items():
            flat |= {f"{task}.{metric}.baseline": d.baseline, f"{task}.{metric}.delta": d.delta,
                     f"{task}.{metric}.delta_stderr": d.delta_stderr}
    return flat


def judge_drops(comparison: dict[str, dict[str, Delta]], max_drop: float) -> list[Verdict]:
    """The relative gate: no task's headline metric drops more than `max_drop` below the baseline."""
    return [verdict(f"{task}.{metric}.delta", d.delta, ">=", -max_drop)
            for task, deltas in comparison.items() for metric, d in deltas.items()]
