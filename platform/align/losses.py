"""Post-training losses in one process: masked next-token loss and response log-probabilities
(DPO's terms: train/preference_step.py)."""
from collections.abc import Sequence

import torch

from llamaops.platform.model import Transformer
from llamaops.platform.model.loss import IGNORE_INDEX, linear_cross_entropy

from .examples import Example, pack_batch


def masked_loss_sum(model: Transformer, examples: Sequence[Example]) -> tuple[torch.Tensor, int]:
    """(sum of -log p over learned tokens, their count) for one packed batch."""
    tokens, targets, document_ids = pack_batch(examples)
    count = sum(e.trained_tokens for e in examples)
    # The model's fused loss is the mean over learned tokens; times their count it is the sum.
    return model(tokens, document_ids=document_ids, targets=targets) * count, count


def final_hidden_states(model: Transformer, tokens: torch.Tensor, document_ids: torch.Tensor) -> torch.Tensor:
    """[B, T, dim] after the final norm: the model run without its output projection, so the caller
    projects only the positions it needs onto the 128K vocabulary."""
    output = model.output
    model.output = None  # the model returns its normed hidden states when it has no output layer
    try:
        return model(tokens, document_ids=document_ids)
    finally:
        model.output = output


def response_logprobs(model: Transformer, examples: Sequence[Example]) -> torch.Tensor:
    """[len(examples)] sum of log p over each example's learned tokens: one packed forward pass,
    then the vocabulary projection (fused with the loss) of the learned positions only."""
    tokens, targets, document_ids = pack_batch(examples)
    hidden = final_hidden_states(model, tokens, document_ids)[0]
    targets, document_ids = targets[0], document_ids[0]
    learned = targets != IGNORE_INDEX
    sums = []
    for index in range(len(examples)):
        rows = learned & (document_ids == index)
        sums.append(-linear_cross_entropy(hidden[rows], model.output.weight, targets[rows], reduction="sum"))
    return torch.stack(sums)
