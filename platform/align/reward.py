"""Reward model: a Llama model whose reward for a dialog is the logit of one reserved token (the
preset's `post_training.reward_model.score_token`, never in the data) at the dialog's last
position, i.e. a scalar head that is one row of the output projection. Trained on preference
pairs with the Bradley-Terry loss on the training engine (reward_stage.py,
train/preference_step.py), published as a plain model directory.

The last position is the engine's: the last input of the dialog's next-token pairs (the token
before the closing <|eot_id|>, which every dialog shares), so that scoring here and training
there read the same hidden state.
"""
from collections.abc import Sequence
from pathlib import Path

import torch

from llamaops.platform.model import Transformer
from llamaops.platform.model.checkpoint import load_model

from .examples import Example, pack_batch


class RewardModel(torch.nn.Module):
    def __init__(self, model: Transformer, score_token: int) -> None:
        super().__init__()
        self.model = model
        self.score_token = score_token

    def forward(self, examples: Sequence[Example]) -> torch.Tensor:
        """[len(examples)] scalar rewards, one packed forward pass."""
        tokens, _, document_ids = pack_batch(examples)
        ends = torch.tensor([len(e.ids) - 1 for e in examples]).cumsum(0) - 1
        scores = self.model(tokens, document_ids=document_ids, score_token=self.score_token)[0]
        return scores[ends]


def pairwise_metrics(chosen: torch.Tensor, rejected: torch.Tensor) -> dict[str, float]:
    """Pairwise accuracy (a tie is not a win) and Bradley-Terry loss of pairs' rewards."""
    margins = chosen - rejected
    return {"pairwise_accuracy": float((margins > 0).float().mean()),
            "bt_loss": float(-torch.nn.functional.logsigmoid(margins).mean())}


def load_reward_model(directory: Path, score_token: int) -> RewardModel:
    return RewardModel(load_model(directory), score_token)
