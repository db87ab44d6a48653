import pytest
import torch

from llamaops.platform.config.model import ModelConfig
from llamaops.platform.model import Transformer


@pytest.fixture
def sharp_model() -> Transformer:
    """A random model whose next token depends on context and position: attention and residual
    branches are scaled up (at init it barely looks past the current token)."""
    cfg = ModelConfig(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_hidden_dim=64, vocab_size=300, max_seq_len=128)
    model = Transformer(cfg.model_copy(update={"rope_scaling": None}))
    model.init_weights(seed=1)
    scales = {"attention.wq": 8, "attention.wk": 8, "attention.wo": 30, "feed_forward.w2": 10}
    with torch.no_grad():
        for name, weight in model.named_parameters():
            weight.mul_(next((s for key, s in scales.items() if key in name), 1))
    return model.eval()
