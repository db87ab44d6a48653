import pytest
import torch

from llamaops.platform.align.errors import AlignmentError
from llamaops.platform.align.lora import LoRALinear, apply_lora, merge_lora
from llamaops.platform.config.model import ModelConfig
from llamaops.platform.model import Transformer
from llamaops.platform.model.checkpoint import load_model, save_model

CFG = ModelConfig(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_hidden_dim=64, vocab_size=50, max_seq_len=32)


def _model() -> Transformer:
    model = Transformer(CFG)
    model.init_weights(0)
    return model


def test_lora_trains_only_adapters_and_merges_exactly(tmp_path):
    torch.manual_seed(0)
    model = _model()
    tokens = torch.randint(0, CFG.vocab_size, (4, 16))
    before = model(tokens).detach()
    frozen = {k: v.clone() for k, v in model.state_dict().items()}

    trainable = apply_lora(model, rank=4, alpha=8, seed=0)
    assert trainable == sum(4 * (m.base.in_features + m.base.out_features)
                            for m in model.modules() if isinstance(m, LoRALinear))
    assert trainable < 0.25 * sum(v.numel() for v in frozen.values())
    torch.testing.assert_close(model(tokens), before)  # B = 0: unchanged until trained

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(20):
        loss = model(tokens[:, :-1], targets=tokens[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        assert float(model(tokens[:, :-1], targets=tokens[:, 1:])) < float(_model()(tokens[:, :-1], targets=tokens[:, 1:]))
        adapted = model(tokens)

    merge_lora(model)
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    assert set(model.state_dict()) == set(frozen)
    assert torch.equal(model.state_dict()["tok_embeddings.weight"], frozen["tok_embeddings.weight"])
    torch.testing.assert_close(model(tokens), adapted, atol=1e-5, rtol=1e-5)
    save_model(model, tmp_path / "merged")  # a plain checkpoint: loads without any LoRA code
    torch.testing.assert_close(load_model(tmp_path / "merged")(tokens), adapted, atol=1e-5, rtol=1e-5)


def test_lora_rank_must_be_positive():
    with pytest.raises(AlignmentError, match="rank must be at least 1"):
        apply_lora(_model(), rank=0, alpha=1)
