import math

import pytest
import torch

from llamaops.platform.train.preference_step import dpo_terms


def _terms(policy_chosen, policy_rejected, ref_chosen, ref_rejected, counts, beta=0.1, nll=0.2):
    t = lambda values: torch.tensor(values, dtype=torch.float64)  # noqa: E731
    return dpo_terms(t(policy_chosen), t(policy_rejected), t(ref_chosen), t(ref_rejected), t(counts), beta, nll)


def test_hand_computed_loss_with_beta_and_nll_term():
    # margin = 0.5 * ((-10 - -12) - (-20 - -18)) = 0.5 * (2 + 2) = 2
    terms = _terms([-10.0], [-20.0], [-12.0], [-18.0], [5.0], beta=0.5, nll=0.2)
    assert terms.margins.item() == pytest.approx(2.0)
    assert terms.preference_loss.item() == pytest.approx(math.log1p(math.exp(-2.0)))
    assert terms.nll.item() == pytest.approx(2.0)  # 10 nats over 5 tokens
    assert terms.loss.item() == pytest.approx(math.log1p(math.exp(-2.0)) + 0.2 * 2.0)


def test_policy_equal_to_reference_gives_log_two_and_no_margin():
    terms = _terms([-3.0, -7.0], [-4.0, -1.0], [-3.0, -7.0], [-4.0, -1.0], [3.0, 7.0], nll=0.0)
    assert terms.loss.item() == pytest.approx(math.log(2))
    assert terms.margins.tolist() == [0.0, 0.0]


def test_sign_preferring_the_rejected_answer_costs_more():
    good = _terms([-9.0], [-21.0], [-10.0], [-20.0], [4.0], nll=0.0)
    bad = _terms([-11.0], [-19.0], [-10.0], [-20.0], [4.0], nll=0.0)
    assert good.margins.item() > 0 > bad.margins.item()
    assert good.loss.item() < math.log(2) < bad.loss.item()


def test_gradient_raises_chosen_and_lowers_rejected():
    chosen = torch.tensor([-10.0], requires_grad=True)
    rejected = torch.tensor([-10.0], requires_grad=True)
    ref = torch.tensor([-10.0])
    dpo_terms(chosen, rejected, ref, ref, torch.tensor([2.0]), beta=0.1, nll_coefficient=0.2).loss.backward()
    # d/d chosen = -beta * sigmoid(-0) - nll / tokens = -0.05 - 0.1; d/d rejected = +beta * 0.5
    assert chosen.grad.item() == pytest.approx(-0.15)
    assert rejected.grad.item() == pytest.approx(0.05)
