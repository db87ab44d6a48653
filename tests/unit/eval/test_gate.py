import math

from llamaops.platform.config.stages import EvalGate
from llamaops.platform.eval.gate import gate_report, judge

GATE = EvalGate(
    max_validation_perplexity=20.0, min_multiple_choice_accuracy=0.5, max_violation_rate=0.1, max_false_refusal_rate=0.2
)
GOOD = {"validation_perplexity": 12.0, "multiple_choice_accuracy": 0.5, "violation_rate": 0.1, "false_refusal_rate": 0.0}


def test_all_thresholds_met_passes_with_one_verdict_each():
    report = gate_report(judge(GOOD, GATE))
    assert report["passed"] and report["failed"] == []
    assert {v["metric"]: (v["comparison"], v["threshold"], v["passed"]) for v in report["verdicts"]} == {
        "validation_perplexity": ("<=", 20.0, True),
        "multiple_choice_accuracy": (">=", 0.5, True),
        "violation_rate": ("<=", 0.1, True),
        "false_refusal_rate": ("<=", 0.2, True),
    }


def test_each_threshold_fails_on_its_own():
    worse = {"validation_perplexity": 20.5, "multiple_choice_accuracy": 0.49, "violation_rate": 0.11, "false_refusal_rate": 0.21}
    for metric, value in worse.items():
        report = gate_report(judge(GOOD | {metric: value}, GATE))
        assert not report["passed"] and report["failed"] == [metric]


def test_missing_or_nan_metric_fails():
    missing = {k: v for k, v in GOOD.items() if k != "violation_rate"}
    assert gate_report(judge(missing, GATE))["failed"] == ["violation_rate"]
    assert gate_report(judge(GOOD | {"validation_perplexity": math.nan}, GATE))["failed"] == ["validation_perplexity"]
    assert gate_report(judge(GOOD | {"validation_perplexity": math.inf}, GATE))["failed"] == ["validation_perplexity"]
