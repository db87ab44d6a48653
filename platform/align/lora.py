"""LoRA (Hu et al. 2021) for SFT and DPO: low-rank adapters on the attention and feed-forward
projections, the base weights frozen; `merge_lora` folds them back so the published checkpoint
is a plain Transformer (native save, Hugging Face export and serving need no LoRA support).

Only the adapters train, so optimizer state and gradients shrink to a few percent of the model:
what lets 70B/405B fine-tuning presets fit fewer GPUs.
"""
import math

import torch
from torch import nn

from llamaops.platform.model import Transformer

from .errors import AlignmentError

TARGETS = ("attention.wq", "attention.wk", "attention.wv", "attention.wo",
           "feed_forward.w1", "feed_forward.w2", "feed_forward.w3")


class LoRALinear(nn.Module):
    """base(x) + (alpha / rank) * x A^T B^T, with B zero at start: the model is unchanged until trained."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, seed: int) -> None:
        super().__init__()
        self.base = base
        self.scale = alpha / rank
        generator = torch.Generator().manual_seed(seed)
        bound = 1 / math.sqrt(base.in_features)
        a = (torch.rand(rank, base.in_features, generator=generator) * 2 - 1) * bound
        self.lora_a = nn.Parameter(a.to(base.weight.dtype))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, dtype=base.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_a.T @ self.lora_b.T) * self.scale

    def merged(self) -> nn.Linear:
        with torch.no_grad():
            self.base.weight += (self.lora_b @ self.lora_a) * self.scale
        return self.base


def apply_lora(model: Transformer, rank: int, alpha: float, seed: int = 0) -> int:
    """Freeze `model` and wrap every target projection in an adapter; returns the trainable count."""
    if rank < 1:
        raise AlignmentError(f"LoRA rank must be at least 1, got {rank}")
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for index, (name, module) in enumerate(_targets(model)):
        parent, attribute = _parent(model, name)
        setattr(parent, attribute, LoRALinear(module, rank, alpha, seed + index))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def merge_lora(model: Transformer) -> Transformer:
    """Fold every adapter into its base weight, in place, and make all weights trainable again."""
    for name, module in list(model.named_modules()):
        if isinstance(module, LoRALinear):
            parent, attribute = _parent(model, name)
            setattr(parent, attribute, module.merged())
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    return model


def _targets(model: Transformer) -> list[tuple[str, nn.Linear]]:
    return [(name, module) for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and name.split(".", 2)[-1] in TARGETS]


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    path, _, attribute = name.rpartition(".")
    return model.get_submodule(path), attribute
