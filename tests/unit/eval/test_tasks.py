import json

import pytest

from llamaops.platform.eval.errors import EvalInputError
from llamaops.platform.eval.tasks import GenerationTask, builtin_tasks, generation_items, load_task, task_items


def _write_task(tmp_path, body: str, records: list[dict] | None = None):
    if records is not None:
        (tmp_path / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    path = tmp_path / "t.yaml"
    path.write_text(body)
    return path


RECORDS = [{"question": f"q{i}", "choices": ["a", "b", "c"], "answer": i % 3} for i in range(6)]


def test_builtin_tasks_load_and_yield_mmlu_items():
    assert {"mmlu_dev_de", "mmlu_dev_th"} <= set(builtin_tasks())
    items = task_items(load_task("mmlu_dev_de"))
    assert len(items) > 100
    assert items[0].context.startswith("Question: ") and items[0].context.endswith("\nAnswer:")
    assert all(c.startswith(" ") for c in items[0].continuations) and 0 <= items[0].answer < 4


def test_jsonl_task_with_fewshot_and_limit(tmp_path):
    path = _write_task(tmp_path, "data_file: items.jsonl\nnum_fewshot: 2\nlimit: 3\nseed: 1\n", RECORDS)
    spec = load_task(str(path))
    assert spec.name == "t" and spec.data_file == tmp_path / "items.jsonl"
    items = task_items(spec)
    assert len(items) == 3
    # The two examples come first, each with its answer, then the question itself.
    assert items[0].context.startswith("Question: q0\nAnswer: a\n\nQuestion: q1\nAnswer: b\n\nQuestion: q")
    assert items == task_items(spec)  # the sample is reproducible


@pytest.mark.parametrize(
    "body, records, message",
    [
        ("data_file: items.jsonl\nnum_shots: 2\n", RECORDS, "num_shots: Extra inputs are not permitted"),
        ("kind: ranking\ndata_file: items.jsonl\n", RECORDS, "kind: Input tag 'ranking' found using 'kind' does not match"),
        ("prompt: x\n", None, "set exactly one of data_file and mmlu_dev"),
        ("kind: generation\n", None, "set exactly one of data_file and gsm8k_cot and arithmetic"),
        ("kind: generation\ngsm8k_cot: true\nmmlu_dev: [de]\n", None, "mmlu_dev: Extra inputs are not permitted"),
        ("kind: generation\ngsm8k_cot: true\nextractor: middle_number\n", None,
         "extractor: Input should be 'regex', 'first_number' or 'last_number'"),
        ("kind: generation\ngsm8k_cot: true\nextractor: regex\n", None, "give `regex` exactly when extractor is regex"),
        ("kind: generation\ngsm8k_cot: true\nextractor: regex\nregex: '(unclosed'\n", None, "does not compile"),
        ("kind: generation\narithmetic: {items: 3, operations: ['/']}\n", None, "arithmetic.operations.0: Input should be"),
        ("extractor: last_number\nmmlu_dev: [de]\n", None, "extractor: Extra inputs are not permitted"),
        ("mmlu_dev: [xx]\n", None, "mmlu_dev languages ['xx'] are not shipped"),
        ("- a list\n", None, "must be a YAML mapping"),
        ("data_file: [unclosed\n", None, "is not readable YAML"),
    ],
)
def test_bad_task_file_fails_in_one_line(tmp_path, body, records, message):
    path = _write_task(tmp_path, body, records)
    with pytest.raises(EvalInputError) as error:
        load_task(str(path))
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    "records, message",
    [
        ([{"question": "q", "choices": ["a"], "answer": 0}] * 2, "a list of at least 2 'choices'"),
        ([{"question": "q", "choices": ["a", "b"], "answer": 5}] * 2, "'answer' must be an index"),
        ([{"text": "q", "choices": ["a", "b"], "answer": 0}] * 2, "does not fit the items"),
    ],
)
def test_bad_items_fail_in_one_line(tmp_path, records, message):
    spec = load_task(str(_write_task(tmp_path, "data_file: items.jsonl\n", records)))
    with pytest.raises(EvalInputError, match=message):
        task_items(spec)


def test_unknown_task_and_missing_data():
    with pytest.raises(EvalInputError, match="unknown task 'nope'.*llamaops eval tasks"):
        load_task("nope")


def test_missing_data_file(tmp_path):
    spec = load_task(str(_write_task(tmp_path, "data_file: gone.jsonl\n")))
    with pytest.raises(EvalInputError, match="cannot read data_file"):
        task_items(spec)


def test_gsm8k_cot_task_is_the_eight_lm_eval_examples_each_with_the_others_as_shots():
    spec = load_task("gsm8k_cot")
    assert isinstance(spec, GenerationTask) and spec.num_fewshot == 7 and spec.fewshot == "others"
    items = generation_items(spec)
    assert len(items) == 8
    assert [item.reference for item in items] == ["6", "5", "39", "8", "9", "29", "33", "8"]
    first = items[0].prompt
    assert first.startswith("Q: If there are 3 cars in the parking lot") and first.count("Q: ") == 8
    assert first.endswith("Q: There are 15 trees in the grove. Grove workers will plant trees in the grove today. "
                          "After they are done, there will be 21 trees. How many trees did the grove workers plant today?\nA:")
    assert "So she has 23 - 15 dollars left. 23 - 15 is 8. The answer is 8.\n\nQ: There are 15" in first


def test_arithmetic_task_is_deterministic_given_its_seed(tmp_path):
    spec = load_task("arithmetic")
    items = generation_items(spec)
    assert len(items) == 64 - 4 and items == generation_items(load_task("arithmetic"))
    for item in items:
        question = item.prompt.rsplit("Q: What is ", 1)[1].removesuffix("?\nA:")
        assert str(eval(question)) == item.reference  # the reference is the arithmetic's result
    other = _write_task(tmp_path, "kind: generation\narithmetic: {items: 64, max_operand: 20, operations: ['+', '-', '*']}\n"
                                  "seed: 1\nnum_fewshot: 4\n")
    assert generation_items(load_task(str(other))) != items


def test_generation_task_from_jsonl_with_first_shots(tmp_path):
    records = [{"question": f"{i} + 1", "target": f"{i} + 1 = {i + 1}.", "answer": i + 1} for i in range(4)]
    path = _write_task(tmp_path, "kind: generation\ndata_file: items.jsonl\nnum_fewshot: 1\n", records)
    items = generation_items(load_task(str(path)))
    assert [i.reference for i in items] == ["2", "3", "4"]
    assert items[0].prompt == "Q: 0 + 1\nA: 0 + 1 = 1.\n\nQ: 1 + 1\nA:"
    bad = _write_task(tmp_path, "kind: generation\ndata_file: items.jsonl\n", [{"question": "q", "answer": [1]}] * 2)
    with pytest.raises(EvalInputError, match="item 0 needs a text or number 'answer'"):
        generation_items(load_task(str(bad)))
