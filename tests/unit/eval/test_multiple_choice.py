import pytest
import torch

from llamaops.platform.config.model import ModelConfig
from llamaops.platform.eval.mmlu import Question
from llamaops.platform.eval.multiple_choice import (
    multiple_choice_accuracy,
    prompt_and_choices,
    score_continuations,
    select_questions,
)
from llamaops.platform.tokenizer import load_tokenizer

from .conftest import SMALL
from .unigram import expected_log_probs, unigram_model


def test_scores_equal_log_likelihood_from_full_logits(small_model):
    context, choices = [5, 17, 42, 8], [[3], [99, 100, 7], [250, 1]]
    scores = score_continuations(small_model, context, choices)
    with torch.no_grad():
        for choice, score in zip(choices, scores):
            tokens = torch.tensor([context + choice])
            log_probs = torch.log_softmax(small_model(tokens)[0].double(), -1)
            expected = sum(float(log_probs[len(context) - 1 + i, t]) for i, t in enumerate(choice))
            assert score.log_likelihood == pytest.approx(expected, abs=1e-4)
            assert score.tokens == len(choice)


def test_sum_and_length_normalised_pick_differently_when_lengths_differ():
    logits = {10: 4.0, 11: 3.0}
    model = unigram_model(SMALL, logits)
    log_p = expected_log_probs(SMALL.vocab_size, logits)
    long_likely, short_less_likely = [10, 10, 10], [11]
    scores = score_continuations(model, [1, 2], [long_likely, short_less_likely])
    assert scores[0].log_likelihood == pytest.approx(3 * float(log_p[10]), abs=1e-4)
    assert scores[1].log_likelihood == pytest.approx(float(log_p[11]), abs=1e-4)
    assert scores[1].log_likelihood > scores[0].log_likelihood  # sum prefers the short one
    assert scores[0].normalised > scores[1].normalised  # per token, the likely one wins


def test_accuracy_is_one_when_the_model_favours_the_right_answers_and_zero_otherwise():
    tokenizer = load_tokenizer()
    cfg = ModelConfig(dim=16, n_layers=1, n_heads=2, n_kv_heads=1, ffn_hidden_dim=32, max_seq_len=64, rope_scaling=None)
    choices = ("Paris", "London", "Rome", "Berlin")
    (rome,) = tokenizer.encode(" Rome")
    (paris,) = tokenizer.encode(" Paris")
    questions = [Question("en", "geo", "Capital of Italy?", choices, 2), Question("en", "geo", "Where is the Colosseum?", choices, 2)]

    def accuracy(model):
        return multiple_choice_accuracy(questions, [score_continuations(model, *prompt_and_choices(q, tokenizer))
                                                    for q in questions])

    result = accuracy(unigram_model(cfg, {rome: 8.0}))
    assert (result.accuracy, result.accuracy_length_normalised, result.chance, result.questions) == (1.0, 1.0, 0.25, 2)

    result = accuracy(unigram_model(cfg, {paris: 8.0}))
    assert (result.accuracy, result.accuracy_length_normalised) == (0.0, 0.0)


def test_question_selection_is_reproducible_and_respects_the_length_cap():
    tokenizer = load_tokenizer()
    questions = [Question("en", "s", "word " * n, ("a", "b"), 0) for n in range(1, 40)]
    picked = select_questions(questions, tokenizer, count=5, max_tokens=20, seed=3)
    assert picked == select_questions(questions, tokenizer, count=5, max_tokens=20, seed=3)
    assert len(picked) == 5
    for question in picked:
        context, options = prompt_and_choices(question, tokenizer)
        assert len(context) + max(map(len, options)) <= 20
