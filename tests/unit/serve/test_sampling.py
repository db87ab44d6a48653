import pytest
import torch

from llamaops.platform.serve import SamplingParams, sample


def test_greedy_is_argmax():
    logits = torch.tensor([0.1, 3.0, 2.9, -1.0])
    assert sample(logits, SamplingParams()) == 1


def test_top_k_and_top_p_restrict_the_support():
    logits = torch.tensor([5.0, 4.9, 0.0, -2.0, 1.0])
    g = torch.Generator().manual_seed(0)
    top_k = {sample(logits, SamplingParams(temperature=10.0, top_k=2), g) for _ in range(200)}
    assert top_k == {0, 1}
    top_p = {sample(logits, SamplingParams(temperature=1.0, top_p=0.5), g) for _ in range(200)}
    assert top_p == {0}


def test_seeded_sampling_repeats():
    logits = torch.randn(1000)
    params = SamplingParams(temperature=1.0, seed=3)
    draw = lambda: [sample(logits, params, torch.Generator().manual_seed(3)) for _ in range(5)]  # noqa: E731
    assert draw() == draw()


@pytest.mark.parametrize("kwargs", [{"max_tokens": 0}, {"temperature": -1}, {"top_p": 0}, {"top_k": -1}])
def test_bad_parameters_are_refused(kwargs):
    with pytest.raises(ValueError):
        SamplingParams(**kwargs)
