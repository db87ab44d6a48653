"""Final hidden states of a whole model, so callers project only the positions they score.

With a 128K vocabulary, logits for every position of a batch dwarf the rest of a small model's
forward pass; evaluation needs them at a few positions only.
"""
import torch

from llamaops.platform.model import Transformer


def final_hidden_states(model: Transformer, tokens: torch.Tensor, **forward_kwargs) -> torch.Tensor:
    """[B, T, dim] after the final norm: the forward pass of a stage without the output projection."""
    output = model.output
    model.output = None
    try:
        return model(tokens, **forward_kwargs)
    finally:
        model.output = output


def log_probs_at(model: Transformer, hidden: torch.Tensor) -> torch.Tensor:
    """fp32 log-probabilities over the vocabulary of hidden states [..., dim]."""
    return torch.log_softmax(model.output(hidden).float(), dim=-1)
