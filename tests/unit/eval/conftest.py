import pytest
import torch

from llamaops.platform.config.model import ModelConfig
from llamaops.platform.model import Transformer

SMALL = ModelConfig(
    dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_hidden_dim=64, vocab_size=300, max_seq_len=128, rope_scaling=None
)


@pytest.fixture
def small_model() -> Transformer:
    torch.manual_seed(0)
    model = Transformer(SMALL)
    model.init_weights(seed=0)
    return model.eval()


@pytest.fixture
def sharp_model(small_model) -> Transformer:
    """small_model with sharp attention and strong residual branches, so a token's prediction
    depends on its context and positions (at init it barely looks past the current token)."""
    with torch.no_grad():
        for block in small_model.layers.values():
            block.attention.wq.weight.mul_(8)
            block.attention.wk.weight.mul_(8)
            block.attention.wo.weight.mul_(30)
            block.feed_forward.w2.weight.mul_(10)
    return small_model
