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


@pytest.fixture(scope="module")
def tokenizer():
    from llamaops.platform.tokenizer import load_tokenizer

    return load_tokenizer()


def vocab_model(tokenizer, dim: int = 16, n_layers: int = 1) -> Transformer:
    """A very small model (seed 0) over the real Llama 3 vocabulary."""
    cfg = ModelConfig(dim=dim, n_layers=n_layers, n_heads=2, n_kv_heads=1, ffn_hidden_dim=2 * dim,
                      vocab_size=tokenizer.vocab_size, max_seq_len=64, rope_scaling=None)
    torch.manual_seed(0)
    model = Transformer(cfg)
    model.init_weights(seed=0)
    return model
