"""What the three post-training stages share: loading and publishing the model, the optimizer,
and the held-out loss."""
from collections.abc import Sequence

import torch

from llamaops.platform.config.stages import FineTuningOptimizer
from llamaops.platform.model import Transformer
from llamaops.platform.model.checkpoint import load_model, save_model
from llamaops.platform.store import fetched, is_complete, staged_output
from llamaops.platform.train.optimizer import adamw

from .errors import AlignmentError
from .examples import Example
from .lora import apply_lora, merge_lora
from .losses import masked_loss_sum

EVAL_BATCH = 16


def check_output_free(output_uri: str) -> None:
    """Fail before any compute rather than after it when the output already exists."""
    if is_complete(output_uri):
        raise AlignmentError(f"artifact {output_uri} already exists; write to a new URI")


def load_input_model(uri: str) -> Transformer:
    with fetched(uri) as directory:
        model = load_model(directory)
    return model


def adapt(model: Transformer, lora_rank: int, lora_alpha: float, seed: int) -> Transformer:
    """LoRA adapters when the stage asks for them (rank > 0), else the model for full fine-tuning."""
    if lora_rank:
        apply_lora(model, lora_rank, lora_alpha, seed)
    return model


def publish_model(model: Transformer, output_uri: str) -> None:
    """Save `model` (any LoRA adapters merged first) as the artifact at `output_uri`."""
    merge_lora(model)
    with staged_output(output_uri) as directory:
        save_model(model, directory)


def make_optimizer(model: torch.nn.Module, lr: float, settings: FineTuningOptimizer) -> torch.optim.AdamW:
    """The stage's AdamW, every setting from its config."""
    return adamw(model, lr=lr, betas=settings.betas, weight_decay=settings.weight_decay)


def optimizer_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor, max_norm: float) -> float:
    """Backward, clip to `max_norm`, step; returns the gradient norm before clipping."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    return float(norm)


@torch.no_grad()
def mean_loss(model: Transformer, examples: Sequence[Example]) -> float:
    """Per-token negative log-likelihood of the learned tokens of `examples`, all weighted equally."""
    if not examples:
        raise AlignmentError("no held-out examples to measure; lower the sequence length limit or add data")
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(examples), EVAL_BATCH):
        loss_sum, tokens = masked_loss_sum(model, examples[start : start + EVAL_BATCH])
        total, count = total + float(loss_sum), count + tokens
    model.train()
    return total / count
