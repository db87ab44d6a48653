"""Reward model: the Llama architecture with a scalar head, trained on preference pairs with the
Bradley-Terry loss -log sigmoid(r(chosen) - r(rejected)), no margin term (as in Llama 3).

The reward of a dialog is the head applied to the final hidden state of its last token. Pairs of a
batch are packed into one row (document ids keep them apart), so padding costs nothing.
"""
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load

from llamaops.platform.model import Transformer
from llamaops.platform.model.checkpoint import load_model, save_model, verified_file

from .examples import Example
from .losses import final_hidden_states
from .preferences import EncodedPair

HEAD_FILE = "reward_head.safetensors"


class RewardModel(torch.nn.Module):
    def __init__(self, backbone: Transformer) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = torch.nn.Linear(backbone.cfg.dim, 1, bias=False)
        torch.nn.init.zeros_(self.head.weight)  # every reward starts at 0: accuracy starts at chance

    def forward(self, examples: Sequence[Example]) -> torch.Tensor:
        """[len(examples)] scalar rewards, one packed forward pass."""
        ids = [i for e in examples for i in e.ids]
        document_ids = [n for n, e in enumerate(examples) for _ in e.ids]
        ends = torch.tensor([len(e.ids) for e in examples]).cumsum(0) - 1
        hidden = final_hidden_states(self.backbone, torch.tensor([ids]), torch.tensor([document_ids]))[0]
        return self.head(hidden[ends]).squeeze(-1).float()


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    return -F.logsigmoid(chosen - rejected).mean()


def pair_rewards(model: RewardModel, pairs: Sequence[EncodedPair]) -> tuple[torch.Tensor, torch.Tensor]:
    rewards = model([p.chosen for p in pairs] + [p.rejected for p in pairs])
    return rewards[: len(pairs)], rewards[len(pairs) :]


@torch.no_grad()
def pairwise_metrics(model: RewardModel, pairs: Sequence[EncodedPair], batch: int = 16) -> dict[str, float]:
    """Held-out pairwise accuracy (a tie is not a win) and Bradley-Terry loss."""
    was_training = model.training
    model.eval()
    chosen, rejected = zip(*(pair_rewards(model, pairs[s : s + batch]) for s in range(0, len(pairs), batch)))
    model.train(was_training)
    c, r = torch.cat(chosen), torch.cat(rejected)
    return {"pairwise_accuracy": float((c > r).float().mean()), "bt_loss": float(bradley_terry_loss(c, r))}


def save_reward_model(model: RewardModel, directory: Path) -> None:
    """A llamaops checkpoint of the backbone plus the head in its own file (the directory must be new)."""
    save_model(model.backbone, directory, extra={HEAD_FILE: {"weight": model.head.weight}})


def load_reward_model(directory: Path) -> RewardModel:
    model = RewardModel(load_model(directory))
    model.head.weight.data.copy_(load(verified_file(directory, HEAD_FILE))["weight"])  # checked before parsed
    return model
