import json
import math

import pytest
import torch

from llamaops.platform.eval.gate import GateSpecError, judge_thresholds, parse_threshold
from llamaops.platform.eval.harness import evaluate_task, markdown_report, mean_and_stderr, results_report
from llamaops.platform.eval.multiple_choice import encode_choices, score_continuations
from llamaops.platform.eval.tasks import load_task
from llamaops.platform.model import Transformer

from .conftest import vocab_model as tiny_vocab_model


@pytest.fixture(scope="module")
def vocab_model(tokenizer) -> Transformer:
    """A very small model over the real Llama 3 vocabulary."""
    model = tiny_vocab_model(tokenizer)
    with torch.no_grad():
        model.output.weight.mul_(50)  # spread the log-likelihoods so predictions differ
    return model.eval()


def test_mean_and_stderr_is_lm_evals():
    mean, stderr = mean_and_stderr([1.0, 0.0, 1.0, 1.0])
    assert mean == 0.75
    assert stderr == pytest.approx(math.sqrt((3 * 0.25**2 + 0.75**2) / 3 / 4))
    assert math.isnan(mean_and_stderr([1.0])[1])


def test_encode_choices_moves_trailing_space_and_splits_the_whole_text(tokenizer):
    context, continuations = encode_choices(tokenizer, "Question: 2+2?\nAnswer: ", ["4", "five"])
    assert context == tokenizer.encode("Question: 2+2?\nAnswer:", bos=True)
    assert continuations == [tokenizer.encode(" 4"), tokenizer.encode(" five")]


def test_evaluate_task_scores_every_choice(tmp_path, vocab_model, tokenizer):
    records = [{"question": f"q{i}", "choices": ["yes", "no", "maybe"], "answer": i % 3} for i in range(5)]
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "t.yaml").write_text("data_file: items.jsonl\n")
    result = evaluate_task(vocab_model, tokenizer, load_task(str(tmp_path / "t.yaml")))
    assert result.size == 5 and result.metrics["chance"] == pytest.approx(1 / 3)
    first = result.items[0]
    context, continuations = encode_choices(tokenizer, "Question: q0\nAnswer:", [" yes", " no", " maybe"])
    expected = [s.log_likelihood for s in score_continuations(vocab_model, context, continuations)]
    assert first.log_likelihoods == pytest.approx(expected)
    assert first.predicted == max(range(3), key=expected.__getitem__)
    accuracy = sum(i.predicted == i.answer for i in result.items) / 5
    assert result.metrics["acc"] == accuracy and result.metrics["acc_stderr"] > 0

    report = results_report("m", [result], gate=None, with_items=True)
    assert report["tasks"]["t"]["items"] == 5 and len(report["items"]["t"]) == 5
    assert "| t | 5 |" in markdown_report(report)


def test_gate_thresholds_on_any_metric():
    metrics = {"a.acc": 0.5, "b.acc_stderr": 0.1}
    verdicts = judge_thresholds(metrics, [parse_threshold("a.acc>=0.4"), parse_threshold("b.acc_stderr<=0.05")])
    assert [v.passed for v in verdicts] == [True, False]
    with pytest.raises(GateSpecError, match="'c.acc' was not measured"):
        judge_thresholds(metrics, [parse_threshold("c.acc>=0")])
    with pytest.raises(GateSpecError, match="is not METRIC>=VALUE"):
        parse_threshold("a.acc=0.4")
