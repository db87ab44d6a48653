import pytest

from llamaops.platform.eval.answers import exact_match, extract_answer, normalise

COT = "Leah had 32 + 42 = 74. After eating 35, they had 74 - 35 = 39. The answer is 39.\n"


@pytest.mark.parametrize(
    "extractor, pattern, completion, expected",
    [
        ("regex", r"The answer is (-?[0-9.,]+)", COT, "39."),
        ("regex", r"The answer is (-?[0-9.,]+)", "I think 39", None),
        ("regex", r"\d+ apples", "3 pears and 12 apples", "12 apples"),  # no group: the whole match
        ("first_number", None, COT, "32"),
        ("last_number", None, COT, "39"),
        ("last_number", None, "It costs $1,234.50 in total", "$1,234.50"),
        ("first_number", None, "minus: -7 then 3", "-7"),
        ("last_number", None, "no digits here", None),
    ],
)
def test_extractors(extractor, pattern, completion, expected):
    assert extract_answer(completion, extractor, pattern) == expected


def test_regex_extractor_needs_a_pattern():
    with pytest.raises(ValueError, match="needs a pattern"):
        extract_answer("1", "regex")


@pytest.mark.parametrize(
    "extracted, reference, matches",
    [
        ("39.", "39", True),  # lm-eval drops a trailing period
        ("$1,234", "1234", True),  # and thousands separators and dollar signs
        ("8.0", "8", True),  # numbers compare by value
        ("-3", "3", False),
        ("Paris", "paris", True),  # and case
        ("Paris.", "Lyon", False),
        (None, "3", False),  # nothing extracted scores zero
    ],
)
def test_exact_match(extracted, reference, matches):
    assert exact_match(extracted, reference) is matches


def test_normalise():
    assert normalise(" $1,000. ") == "1000"
