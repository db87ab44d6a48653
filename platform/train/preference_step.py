"""DPO on the training engine, for every layout, as a per-token weighting of the next-token loss.

DPO's loss is a nonlinear function of whole responses' log-probabilities, so it cannot be summed
over tokens, microbatches or ranks as the next-token loss is (step_loss.py). Its gradient can:
with pc, pr the summed log-probs of a pair's chosen and rejected responses,

    d L = dL/dpc * d pc + dL/dpr * d pr,    and  d pc = -sum over pc's tokens of d (token loss),

so the step's gradient is that of sum_t w_t * loss_t, w_t = -dL/dp of the response token t is
in. A step therefore runs two passes over the rank's rows: a forward without autograd that gives
every response's log-prob (one all-reduce shares the step's log-probs with every rank, so each
computes the same loss and weights), then the weighted loss's forward and backward, which the
engine runs like any other (FSDP2, TP, pipeline microbatches: the weights travel with the targets).
The extra forward costs about a third of a step without activation checkpointing.

The reference model's log-probs are the input model's, measured by the workers over the whole
training set before the first step (example_losses.py) and published next to the checkpoints: no
second model is ever held, and a restart reads them back.

A step's examples are pairs in order (chosen, rejected, chosen, ...), and DP rank d holds the
d-th contiguous share of them, so every pair sits on one rank (the driver makes the shares even).
"""
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .batches import Batch
from .example_losses import sharded_example_losses, step_example_losses
from .example_set import TRAIN, ExampleSet
from .rank_model import RankModel
from .step_figures import load_step_arrays, publish_step_figures

REFERENCE_FIGURES = "reference"


@dataclass(frozen=True)
class PreferenceObjective:
    """DPO with the NLL term on chosen responses (the Llama 3 recipe); picklable."""

    beta: float
    nll_coefficient: float
    seq_len: int  # the reference pass packs the training examples into rows of this many tokens
    examples_per_forward: int = 16


def reference_losses(placed: RankModel, objective: PreferenceObjective, checkpoint_root: str, data_dir,
                     rank: int, device: torch.device) -> np.ndarray:
    """(Collective) [training examples] each one's summed loss under the reference model: the
    input model, which `placed` must still hold unless they were published already (read back)."""
    published = load_step_arrays(checkpoint_root, REFERENCE_FIGURES, 0)
    if published is not None:
        return published[TRAIN]
    losses, _ = sharded_example_losses(placed, ExampleSet.open(data_dir, TRAIN), objective.seq_len,
                                       objective.examples_per_forward, device)
    if rank == 0:
        publish_step_figures(checkpoint_root, REFERENCE_FIGURES, 0, {"examples": len(losses)}, {TRAIN: losses})
    return losses


@dataclass
class DPOTerms:
    loss: torch.Tensor  # scalar to minimise: mean DPO loss + nll_coefficient * mean NLL
    preference_loss: torch.Tensor  # [pairs] -log sigmoid(margin)
    nll: torch.Tensor  # [pairs] per-token NLL of the chosen responses
    margins: torch.Tensor  # [pairs] reward(chosen) - reward(rejected)


def dpo_terms(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    chosen_tokens: torch.Tensor,
    beta: float,
    nll_coefficient: float,
) -> DPOTerms:
    """DPO (Rafailov et al. 2023) with the NLL term on chosen responses of the Llama 3 recipe.

    The implicit reward of a response is beta * (log pi(y|x) - log pi_ref(y|x)); all log-probs are
    sums over the response's learned tokens, `chosen_tokens` their count for the per-token NLL.
    """
    chosen_rewards = beta * (policy_chosen - reference_chosen)
    rejected_rewards = beta * (policy_rejected - reference_rejected)
    margins = chosen_rewards - rejected_rewards
    preference_loss = -F.logsigmoid(margins)
    nll = -policy_chosen / chosen_tokens
    loss = preference_loss.mean() + nll_coefficient * nll.mean()
    return DPOTerms(loss, preference_loss, nll, margins.detach())


def preference_forward_backward(placed: RankModel, batch: Batch, objective: PreferenceObjective,
                                reference: np.ndarray, device: torch.device) -> dict[str, float]:
    """(Collective) gradients of the step's DPO loss. `reference`: the summed next-token losses
    (minus log-probs) of the step's examples under the reference model, in step order; `batch`:
    this DP rank's share of them. Returns the step's loss and mean reward margin (every rank)."""
    total = len(reference)
    per_rank = total // placed.layout.dp
    offset = placed.dp_rank * per_rank
    losses, counted = step_example_losses(placed, batch, offset, total, device)
    policy = (-losses).requires_grad_()
    reference_t = torch.from_numpy(-np.asarray(reference, dtype=np.float64))
    terms = dpo_terms(policy[0::2], policy[1::2], reference_t[0::2], reference_t[1::2], counted[0::2],
                      objective.beta, objective.nll_coefficient)
    terms.loss.backward()
    # d L / d (a token's loss) = -d L / d (its response's log-prob)
    example_weights = (-policy.grad[offset : offset + per_rank]).to(torch.float32)
    index = batch.example_index
    token_weights = torch.where(index >= 0, example_weights[index.clamp(min=0)], 0.0)
    placed.forward_backward(batch, device, token_weights=token_weights)
    return {"loss": float(terms.loss.detach()), "reward_margin": float(terms.margins.mean())}
