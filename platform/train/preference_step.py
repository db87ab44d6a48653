"""The pairwise objectives on the training engine, for every layout: DPO and the reward model's
Bradley-Terry loss, each as a per-position weighting of a loss the engine sums.

Both losses are nonlinear functions of one value per response (DPO: its summed log-prob; the
reward model: its score), so they cannot be summed over tokens, microbatches or ranks as the
next-token loss is (step_loss.py). Their gradients can: with v_e the value of response e,

    dL = sum_e dL/dv_e * dv_e,

and v_e is itself a sum over positions (of next-token losses, or the score token's logit at the
response's last position), so the step's gradient is that of sum_t w_t * value_t with w_t the
dL/dv of the response position t counts in. A step therefore runs two passes over the rank's
rows: a forward without autograd that gives every response's value (one all-reduce shares the
step's values with every rank, so each computes the same loss and weights), then the weighted
sum's forward and backward, which the engine runs like any other (FSDP2, TP, pipeline
microbatches: the weights travel with the targets). The extra forward costs about a third of a
step without activation checkpointing.

DPO's reference log-probs are the input model's, measured by the workers over the whole training
set before the first step (example_values.py) and published next to the checkpoints: no second
model is ever held, and a restart reads them back.

A step's examples are pairs in order (chosen, rejected, chosen, ...), and DP rank d holds the
d-th contiguous share of them, so every pair sits on one rank (the driver makes the shares even).
"""
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .batches import Batch
from .example_set import TRAIN, ExampleSet
from .example_values import counted_positions, sharded_example_values, step_example_values
from .rank_init import local_box
from .rank_model import RankModel
from .step_figures import load_step_arrays, publish_step_figures

REFERENCE_FIGURES = "reference"


@dataclass(frozen=True)
class DPOObjective:
    """DPO with the NLL term on chosen responses (the Llama 3 recipe); picklable."""

    beta: float
    nll_coefficient: float
    seq_len: int  # the reference pass packs the training examples into rows of this many tokens
    examples_per_forward: int = 16
    score_token = None  # a response's value is its summed next-token loss


@dataclass(frozen=True)
class RewardObjective:
    """Bradley-Terry, -log sigmoid(r(chosen) - r(rejected)), no margin term (as in Llama 3). A
    response's reward is the logit of `score_token` (a reserved token, never in the data) at its
    last position; that row of the output projection starts at zero, so every reward starts at 0."""

    score_token: int


PairwiseObjective = DPOObjective | RewardObjective


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


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    return -F.logsigmoid(chosen - rejected).mean()


def reference_losses(placed: RankModel, objective: DPOObjective, checkpoint_root: str, data_dir,
                     rank: int, device: torch.device) -> np.ndarray:
    """(Collective) [training examples] each one's summed loss under the reference model: the
    input model, which `placed` must still hold unless they were published already (read back)."""
    published = load_step_arrays(checkpoint_root, REFERENCE_FIGURES, 0)
    if published is not None:
        return published[TRAIN]
    losses, _ = sharded_example_values(placed, ExampleSet.open(data_dir, TRAIN), objective.seq_len,
                                       objective.examples_per_forward, device)
    if rank == 0:
        publish_step_figures(checkpoint_root, REFERENCE_FIGURES, 0, {"examples": len(losses)}, {TRAIN: losses})
    return losses


@torch.no_grad()
def start_reward_head(placed: RankModel, objective: RewardObjective) -> None:
    """Zero the score token's row of the output projection, on the rank holding it (if any)."""
    for part in placed.parts:
        if part.output is None:
            continue
        local, offset = local_box(part.output.weight)
        row = objective.score_token - offset[0]
        if 0 <= row < local.shape[0]:
            local[row].zero_()


def pairwise_forward_backward(placed: RankModel, batch: Batch, objective: PairwiseObjective, total: int,
                              reference: np.ndarray | None, device: torch.device) -> dict[str, float]:
    """(Collective) gradients of the step's loss. `batch`: this DP rank's share of the step's
    `total` examples; `reference` (DPO): their summed losses under the reference model, in step
    order. Returns the step's loss and mean margin (every rank)."""
    per_rank = total // placed.layout.dp
    offset = placed.dp_rank * per_rank
    values, counted = step_example_values(placed, batch, offset, total, device, objective.score_token)
    values.requires_grad_()
    if isinstance(objective, DPOObjective):
        policy, reference_t = -values, torch.from_numpy(-np.asarray(reference, dtype=np.float64))
        terms = dpo_terms(policy[0::2], policy[1::2], reference_t[0::2], reference_t[1::2], counted[0::2],
                          objective.beta, objective.nll_coefficient)
        loss, margins = terms.loss, terms.margins
    else:
        loss, margins = bradley_terry_loss(values[0::2], values[1::2]), (values[0::2] - values[1::2]).detach()
    loss.backward()
    example_weights = values.grad[offset : offset + per_rank].to(torch.float32)
    index = batch.example_index
    counts = counted_positions(batch, objective.score_token)
    token_weights = torch.where(counts, example_weights[index.clamp(min=0)], 0.0)
    placed.forward_backward(batch, device, token_weights=token_weights, score_token=objective.score_token)
    return {"loss": float(loss.detach()), "reward_margin": float(margins.mean())}
