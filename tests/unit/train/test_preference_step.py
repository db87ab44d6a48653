"""The pairwise objectives on the engine: their two passes (each response's value without
autograd, then the per-position weighted loss or score) give exactly the gradient autograd gives
for the DPO loss, and for the reward model's Bradley-Terry loss, of the same pairs computed in one
process, packed into rows or one example per row; per-example values are each example's own."""
import numpy as np
import pytest
import torch

from llamaops.platform.align.examples import Example
from llamaops.platform.align.losses import response_logprobs
from llamaops.platform.align.reward import RewardModel
from llamaops.platform.config.parallel import ParallelLayout
from llamaops.platform.model import Transformer
from llamaops.platform.model.loss import linear_cross_entropy
from llamaops.platform.train.example_set import example_batch
from llamaops.platform.train.example_values import step_example_values
from llamaops.platform.train.preference_step import (
    DPOObjective,
    RewardObjective,
    bradley_terry_loss,
    dpo_terms,
    pairwise_forward_backward,
)
from llamaops.platform.train.rank_model import RankModel

from .micro import MICRO_VOCAB, micro_preset

BETA, NLL = 0.5, 0.2


def _pairs(count: int) -> list[Example]:
    """chosen, rejected, ...: a shared prompt that is not learned, then replies of varied lengths."""
    rng = np.random.default_rng(3)
    examples = []
    for _ in range(count):
        prompt = rng.integers(0, MICRO_VOCAB, int(rng.integers(3, 9))).tolist()
        for _side in range(2):
            reply = rng.integers(0, MICRO_VOCAB, int(rng.integers(2, 12))).tolist()
            examples.append(Example(tuple(prompt + reply), (False,) * len(prompt) + (True,) * len(reply)))
    return examples


def _model() -> Transformer:
    model = Transformer(micro_preset().model)
    model.init_weights(0)
    return model


def _gradients(model: Transformer) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("row_tokens", [None, 48])
def test_the_two_passes_give_autograds_dpo_gradient(row_tokens):
    examples = _pairs(3)
    reference = torch.randn(len(examples), dtype=torch.float64, generator=torch.Generator().manual_seed(0)) - 20

    want_model = _model()
    logprobs = response_logprobs(want_model, examples)
    counts = torch.tensor([e.trained_tokens for e in examples[0::2]], dtype=logprobs.dtype)
    terms = dpo_terms(logprobs[0::2], logprobs[1::2], -reference[0::2].float(), -reference[1::2].float(), counts,
                      BETA, NLL)
    terms.loss.backward()

    model = _model()
    placed = RankModel([model], ParallelLayout(), None)
    batch = example_batch([(np.array(e.ids), np.array(e.trained)) for e in examples], row_tokens=row_tokens)
    figures = pairwise_forward_backward(placed, batch, DPOObjective(BETA, NLL, 64), len(examples), reference.numpy(),
                                        torch.device("cpu"))
    assert figures["loss"] == pytest.approx(float(terms.loss), rel=1e-5)
    assert figures["reward_margin"] == pytest.approx(float(terms.margins.mean()), rel=1e-4, abs=1e-6)
    want = _gradients(want_model)
    for name, grad in _gradients(model).items():
        torch.testing.assert_close(grad, want[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("row_tokens", [None, 48])
def test_the_two_passes_give_autograds_reward_model_gradient(row_tokens):
    examples, token = _pairs(3), MICRO_VOCAB - 1
    want_model = _model()
    rewards = RewardModel(want_model, token)(examples)
    loss = bradley_terry_loss(rewards[0::2], rewards[1::2])
    loss.backward()

    model = _model()
    placed = RankModel([model], ParallelLayout(), None)
    batch = example_batch([(np.array(e.ids), np.array(e.trained)) for e in examples], row_tokens=row_tokens)
    figures = pairwise_forward_backward(placed, batch, RewardObjective(token), len(examples), None, torch.device("cpu"))
    assert figures["loss"] == pytest.approx(float(loss), rel=1e-5)
    assert figures["reward_margin"] == pytest.approx(float((rewards[0::2] - rewards[1::2]).mean()), rel=1e-4)
    want = _gradients(want_model)
    for name, grad in _gradients(model).items():
        torch.testing.assert_close(grad, want[name], rtol=1e-4, atol=1e-6, msg=name)
    assert model.output.weight.grad[:token].abs().max() == 0  # the score token's row alone


def test_per_example_values_are_each_examples_own():
    examples = _pairs(2)
    model = _model()
    placed = RankModel([model], ParallelLayout(), None)
    batch = example_batch([(np.array(e.ids), np.array(e.trained)) for e in examples], row_tokens=40)
    losses, counted = step_example_values(placed, batch, 0, len(examples), torch.device("cpu"))
    scores, _ = step_example_values(placed, batch, 0, len(examples), torch.device("cpu"), score_token=5)
    with torch.no_grad():
        alone = [-float(response_logprobs(model, [e])[0]) for e in examples]
        alone_scores = [float(RewardModel(model, 5)([e])[0]) for e in examples]
    assert losses.tolist() == pytest.approx(alone, rel=1e-5)
    assert counted.tolist() == [e.trained_tokens for e in examples]
    assert scores.tolist() == pytest.approx(alone_scores, rel=1e-5)


def test_weighted_token_losses_are_the_weighted_sum_of_each_positions_loss():
    hidden = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(1))
    weight = torch.randn(11, 8, generator=torch.Generator().manual_seed(2))
    targets = torch.tensor([[1, 2, -100, 4, 5], [6, -100, 8, 9, 10]])
    weights = torch.rand(2, 5, generator=torch.Generator().manual_seed(3))
    each = linear_cross_entropy(hidden, weight, targets, reduction="none")
    assert each.shape == (2, 5) and each[0, 2] == 0 and each[1, 1] == 0
    full = torch.nn.functional.cross_entropy((hidden @ weight.T).reshape(-1, 11), targets.reshape(-1),
                                             reduction="none").reshape(2, 5)
    torch.testing.assert_close(each, full)
    fused_hidden, plain_hidden = hidden.clone().requires_grad_(), hidden.clone().requires_grad_()
    weighted = linear_cross_entropy(fused_hidden, weight, targets, reduction="sum", token_weights=weights)
    plain = (torch.nn.functional.cross_entropy((plain_hidden @ weight.T).reshape(-1, 11), targets.reshape(-1),
                                               reduction="none").reshape(2, 5) * weights).sum()
    torch.testing.assert_close(weighted, plain)
    weighted.backward()
    plain.backward()
    torch.testing.assert_close(fused_hidden.grad, plain_hidden.grad)
