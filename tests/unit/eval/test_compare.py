import math

import pytest

from llamaops.platform.eval.compare import compare_results, delta_metrics, judge_drops
from llamaops.platform.eval.results import TaskResult, mean_and_stderr


def _result(task: str, correct: list[float]) -> TaskResult:
    mean, stderr = mean_and_stderr(correct)
    return TaskResult(task, "generation", {"exact_match": mean, "exact_match_stderr": stderr}, [None] * len(correct),
                      {"exact_match": correct})


def test_delta_and_its_paired_standard_error():
    model, baseline = [1.0, 1.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0]
    comparison = compare_results([_result("t", model)], [_result("t", baseline)])
    d = comparison["t"]["exact_match"]
    assert (d.model, d.baseline, d.delta) == (0.75, 0.25, 0.5)
    # Paired: the standard error of the per-item differences [0, 1, 0, 1].
    assert d.delta_stderr == pytest.approx(mean_and_stderr([0.0, 1.0, 0.0, 1.0])[1])
    assert delta_metrics(comparison) == {"t.exact_match.baseline": 0.25, "t.exact_match.delta": 0.5,
                                         "t.exact_match.delta_stderr": d.delta_stderr}


def test_a_model_against_itself_has_zero_delta_and_zero_error():
    same = [1.0, 0.0, 1.0]
    d = compare_results([_result("t", same)], [_result("t", same)])["t"]["exact_match"]
    assert d.delta == 0.0 and d.delta_stderr == 0.0


def test_relative_gate_fails_only_past_the_allowed_drop():
    comparison = compare_results([_result("a", [1.0, 0.0, 0.0, 0.0]), _result("b", [1.0, 1.0, 1.0, 1.0])],
                                 [_result("a", [1.0, 1.0, 0.0, 0.0]), _result("b", [1.0, 1.0, 1.0, 0.0])])
    verdicts = {v.metric: v for v in judge_drops(comparison, max_drop=0.2)}
    assert verdicts["a.exact_match.delta"].value == -0.25 and not verdicts["a.exact_match.delta"].passed
    assert verdicts["b.exact_match.delta"].passed and verdicts["b.exact_match.delta"].threshold == -0.2
    assert all(v.passed for v in judge_drops(comparison, max_drop=0.25))


def test_different_item_counts_are_refused():
    with pytest.raises(ValueError, match="3 items against the baseline's 2"):
        compare_results([_result("t", [1.0, 0.0, 1.0])], [_result("t", [1.0, 0.0])])
    assert math.isnan(compare_results([_result("t", [1.0])], [_result("t", [0.0])])["t"]["exact_match"].delta_stderr)
