import pytest

from llamaops.platform.data.packages import MissingPackageDataError
from llamaops.platform.eval.mmlu import load_mmlu_dev


def test_llama_multilingual_mmlu_dev_questions_load_from_the_lm_eval_package():
    questions = load_mmlu_dev(["de", "th"])
    assert {q.language for q in questions} == {"de", "th"}
    assert len(questions) == 2 * 57 * 5  # five dev samples for each of the 57 MMLU subjects
    assert all(len(q.choices) == 4 and 0 <= q.answer < 4 and q.question for q in questions)
    first = questions[0]
    assert (first.subject, first.choices, first.answer) == ("abstract_algebra", ("0", "1", "2", "3"), 1)


def test_missing_package_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMAOPS_DATA_PACKAGES", str(tmp_path))
    with pytest.raises(MissingPackageDataError, match="pip download --no-deps lm-eval==0.4.13"):
        load_mmlu_dev(["de"])
