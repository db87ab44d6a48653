"""The promotion gate: every measured metric against its threshold in preset.eval_gate."""
import math
import re
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
        verdicts.append(verdict(metric, float(metrics.get(metric, math.nan)), comparison, float(getattr(gate, field))))
    return verdicts


def judge_against_baseline(metrics: dict[str, float], baseline: dict[str, float], max_worsening: float) -> list[Verdict]:
    """The relative gate: each gated rate may be worse than the baseline's by at most `max_worsening`
    (lower for accuracy, higher for VR and FRR). Perplexity is not a rate and has its own threshold;
    a metric the baseline did not record is not judged."""
    verdicts = []
    for metric, (_, comparison) in GATED_METRICS.items():
        if metric == "validation_perplexity" or metric not in baseline:
            continue
        value = float(metrics.get(metric, math.nan))
        worsening = baseline[metric] - value if comparison == ">=" else value - baseline[metric]
        verdicts.append(verdict(f"{metric}.worsening", worsening, "<=", max_worsening))
    return verdicts


def verdict(metric: str, value: float, comparison: Literal["<=", ">="], threshold: float) -> Verdict:
    within = value <= threshold if comparison == "<=" else value >= threshold
    return Verdict(metric, value, comparison, threshold, bool(within) and not math.isnan(value))


def gate_report(verdicts: list[Verdict]) -> dict:
    return {
        "passed": all(v.passed for v in verdicts),
        "verdicts": [asdict(v) for v in verdicts],
        "failed": [v.metric for v in verdicts if not v.passed],
    }


_THRESHOLD = re.compile(r"\s*([\w./-]+)\s*(<=|>=)\s*([-+0-9.eE]+|nan|inf)\s*")


@dataclass(frozen=True)
class Threshold:
    metric: str
    comparison: Literal["<=", ">="]
    value: float


def parse_threshold(text: str) -> Threshold:
    """`METRIC>=VALUE` or `METRIC<=VALUE`, e.g. `mmlu_dev_de.acc>=0.3`."""
    match = _THRESHOLD.fullmatch(text)
    if not match:
        raise GateSpecError(f"gate '{text}' is not METRIC>=VALUE or METRIC<=VALUE (e.g. mmlu_dev_de.acc>=0.3)")
    try:
        value = float(match[3])
    except ValueError:
        raise GateSpecError(f"gate '{text}': '{match[3]}' is not a number") from None
    return Threshold(match[1], match[2], value)  # type: ignore[arg-type]


def judge_thresholds(metrics: dict[str, float], thresholds: list[Threshold]) -> list[Verdict]:
    """Any metric against any threshold; a metric that was not measured is an input error."""
    verdicts = []
    for t in thresholds:
        if t.metric not in metrics:
            raise GateSpecError(f"gate metric '{t.metric}' was not measured; choose from {sorted(metrics)}")
        verdicts.append(verdict(t.metric, float(metrics[t.metric]), t.comparison, t.value))
    return verdicts


class GateSpecError(ValueError):
    """A gate given on the command line is malformed or names a metric that was not measured."""
