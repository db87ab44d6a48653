"""The promotion gate: every measured metric against its threshold in preset.eval_gate."""
import math
from dataclasses import asdict, dataclass
from typing import Literal

from llamaops.platform.config.stages import EvalGate


@dataclass(frozen=True)
class Verdict:
    metric: str
    value: float
    comparison: Literal["<=", ">="]
    threshold: float
    passed: bool


# metric name -> (EvalGate field, how the value must compare with it)
GATED_METRICS: dict[str, tuple[str, Literal["<=", ">="]]] = {
    "validation_perplexity": ("max_validation_perplexity", "<="),
    "multiple_choice_accuracy": ("min_multiple_choice_accuracy", ">="),
    "violation_rate": ("max_violation_rate", "<="),
    "false_refusal_rate": ("max_false_refusal_rate", "<="),
}


def judge(metrics: dict[str, float], gate: EvalGate) -> list[Verdict]:
    """One verdict per threshold; a missing or NaN metric fails its threshold."""
    verdicts = []
    for metric, (field, comparison) in GATED_METRICS.items():
        threshold = float(getattr(gate, field))
        value = float(metrics.get(metric, math.nan))
        within = value <= threshold if comparison == "<=" else value >= threshold
        verdicts.append(Verdict(metric, value, comparison, threshold, bool(within) and not math.isnan(value)))
    return verdicts


def gate_report(verdicts: list[Verdict]) -> dict:
    return {
        "passed": all(v.passed for v in verdicts),
        "verdicts": [asdict(v) for v in verdicts],
        "failed": [v.metric for v in verdicts if not v.passed],
    }
