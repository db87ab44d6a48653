import json

import pytest

from llamaops.platform.eval.errors import EvalInputError
from llamaops.platform.eval.tasks import builtin_tasks, load_task, task_items


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
        ("kind: generation\ndata_file: items.jsonl\n", RECORDS, "kind: Input should be 'multiple_choice'"),
        ("prompt: x\n", None, "set exactly one of data_file and mmlu_dev"),
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
