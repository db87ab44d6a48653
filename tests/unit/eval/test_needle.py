import pytest

from llamaops.platform.eval.errors import EvalInputError
from llamaops.platform.eval.needle import needle_accuracy, needle_cases
from llamaops.platform.tokenizer import load_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


def test_cases_have_the_asked_lengths_and_hide_the_needle_at_each_depth(tokenizer):
    cases = needle_cases(tokenizer, lengths=[128, 512], depths=[0.0, 0.5, 1.0], seed=1)
    assert len(cases) == 6
    for case in cases:
        tokens = len(tokenizer.encode(case.prompt, bos=True))
        assert abs(tokens - case.length) <= 4  # re-tokenising at the seams may merge a few tokens
        assert case.prompt.count(case.secret) == 1
    deep = cases[2]
    assert deep.prompt.index(deep.secret) > len(deep.prompt) // 2
    assert cases == needle_cases(tokenizer, [128, 512], [0.0, 0.5, 1.0], seed=1)


def test_accuracy_per_length_with_a_reader_of_limited_context(tokenizer):
    """A responder that only sees its last 300 tokens finds every needle at 128 tokens, and at
    1024 tokens only needles near the end."""
    def respond(prompts):
        replies = []
        for prompt in prompts:
            window = tokenizer.decode(tokenizer.encode(prompt)[-300:])
            replies.append(window.split("secret number is ")[1][:5] if "secret number is " in window else "no idea")
        return replies

    cases = needle_cases(tokenizer, [128, 1024], [0.0, 0.5, 1.0])
    metrics = needle_accuracy(respond, cases)
    assert metrics["needle_accuracy@128"] == 1.0
    assert metrics["needle_accuracy@1024"] == pytest.approx(1 / 3)
    assert metrics["needle_accuracy"] == pytest.approx(4 / 6)


def test_bad_lengths_fail_clearly(tokenizer):
    with pytest.raises(EvalInputError, match="too short"):
        needle_cases(tokenizer, [10], [0.5])
    with pytest.raises(EvalInputError, match="each depth in"):
        needle_cases(tokenizer, [100], [1.5])
