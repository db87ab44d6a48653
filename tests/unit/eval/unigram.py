"""A Transformer rigged to ignore its input: every position predicts one fixed distribution.

All embeddings are the vector of ones and the residual branches are zero, so every final hidden
state is norm(ones) = ones; an output row of logit / dim then yields exactly that logit.
"""
import torch

from llamaops.platform.config.model import ModelConfig
from llamaops.platform.model import Transformer


@torch.no_grad()
def unigram_model(cfg: ModelConfig, logits: dict[int, float]) -> Transformer:
    model = Transformer(cfg)
    model.init_weights(seed=0)
    v = torch.ones(cfg.dim)
    model.tok_embeddings.weight.copy_(v.expand(cfg.vocab_size, cfg.dim))
    for block in model.layers.values():
        block.attention.wo.weight.zero_()
        block.feed_forward.w2.weight.zero_()
    model.output.weight.zero_()
    for token, logit in logits.items():
        model.output.weight[token] = logit / cfg.dim
    return model.eval()


def expected_log_probs(vocab_size: int, logits: dict[int, float]) -> torch.Tensor:
    full = torch.zeros(vocab_size)
    for token, logit in logits.items():
        full[token] = logit
    return torch.log_softmax(full, -1)
