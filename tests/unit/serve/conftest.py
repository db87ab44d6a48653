import pytest
import torch

from llamaops.platform.config.model import ModelConfig
from llamaops.platform.model import Transformer
from llamaops.platform.tokenizer import load_tokenizer


@pytest.fixture(scope="session")
def tokenizer():
    return load_tokenizer()


@pytest.fixture(scope="session")
def small_model() -> Transformer:
    torch.manual_seed(0)
    cfg = ModelConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_hidden_dim=128, max_seq_len=256)
    model = Transformer(cfg)
    model.init_weights(seed=0)
    return model.eval()


@pytest.fixture(scope="session")
def greedy_reference(small_model):
    """The argmax continuation of a prompt by re-running the whole sequence each token (no cache)."""

    def continuation(prompt: list[int], n: int) -> list[int]:
        tokens = list(prompt)
        with torch.no_grad():
            for _ in range(n):
                tokens.append(int(small_model(torch.tensor([tokens]), last_only=True)[0, -1].argmax()))
        return tokens[len(prompt):]

    return continuation
