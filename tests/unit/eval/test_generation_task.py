import json

import pytest

from llamaops.platform.eval.errors import EvalInputError
from llamaops.platform.eval.generation import generate
from llamaops.platform.eval.generation_task import evaluate_generation, score_completions
from llamaops.platform.eval.tasks import generation_items, load_task
from llamaops.platform.serve.sampling import SamplingParams

from .conftest import vocab_model


def test_completions_that_answer_correctly_score_one():
    spec = load_task("gsm8k_cot")
    items = generation_items(spec)
    # What a perfect model writes: each example's own worked solution (the gold chain of thought).
    from llamaops.platform.eval.gsm8k import load_gsm8k_cot

    solutions = [" " + record["target"] for record in load_gsm8k_cot()]
    result = score_completions(spec, solutions, [i.reference for i in items])
    assert result.metrics == {"exact_match": 1.0, "exact_match_stderr": 0.0, "extracted": 1.0}
    assert all(i.correct and i.extracted for i in result.items)


def test_wrong_and_unanswered_completions_score_zero_with_a_standard_error():
    spec = load_task("arithmetic")
    result = score_completions(spec, ["3 + 4 = 7. The answer is 7.", "2 * 5 = 11", "I do not know", " 12"],
                               ["7", "10", "1", "12"])
    assert [i.correct for i in result.items] == [True, False, False, True]
    assert [i.extracted for i in result.items] == ["7", "11", None, "12"]
    assert result.metrics["exact_match"] == 0.5 and result.metrics["extracted"] == 0.75
    assert result.metrics["exact_match_stderr"] == pytest.approx((1 / 3) ** 0.5 / 2)


def test_a_real_model_runs_a_generation_task_greedily(tmp_path, tokenizer):
    model = vocab_model(tokenizer).eval()
    records = [{"question": f"What is {i} + {i}?", "target": f"{2 * i}", "answer": 2 * i} for i in range(5)]
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "t.yaml").write_text("kind: generation\ndata_file: items.jsonl\nnum_fewshot: 1\nmax_new_tokens: 6\n")
    spec = load_task(str(tmp_path / "t.yaml"))
    result = evaluate_generation(model, tokenizer, spec)
    assert result.size == 4 and 0 <= result.metrics["exact_match"] <= 1
    # The completions are the engine's greedy continuations of the rendered prompts.
    prompts = [tokenizer.encode(item.prompt, bos=True) for item in generation_items(spec)]
    expected = generate(model, tokenizer, prompts, SamplingParams(max_tokens=6, temperature=0.0, stop=("\n\n", "Q:")))
    assert [i.completion for i in result.items] == expected

    (tmp_path / "long.yaml").write_text("kind: generation\ndata_file: items.jsonl\nmax_new_tokens: 60\n")
    with pytest.raises(EvalInputError, match="more than the model's max_seq_len 64; lower num_fewshot or max_new_tokens"):
        evaluate_generation(model, tokenizer, load_task(str(tmp_path / "long.yaml")))
