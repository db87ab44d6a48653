"""Seeded init by blocks of rows (model/weight_init.py): any box of a parameter is the same box of
the whole, so every sharding of the model starts from the same weights."""
import pytest
import torch

from llamaops.platform.config import ModelConfig
from llamaops.platform.model import Transformer, weight_init
from llamaops.platform.model.weight_init import Init, fill_

NORMAL = Init("normal", std=0.5)


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(weight_init, "BLOCK_ELEMENTS", 40)  # 4 rows of 10 per block


@pytest.mark.parametrize("rows, columns", [
    (slice(0, 23), slice(0, 10)),  # the whole
    (slice(5, 14), slice(0, 10)),  # a row shard starting and ending inside blocks (FSDP, Shard(0))
    (slice(0, 23), slice(3, 7)),  # a column shard (Shard(1)): whole blocks drawn, their columns kept
    (slice(9, 10), slice(6, 10)),  # one row of one block
    (slice(12, 12), slice(0, 10)),  # an empty shard
])
def test_a_box_holds_the_whole_parameters_values_there(small_blocks, rows, columns):
    whole = fill_(torch.empty(23, 10), NORMAL, 3, "layers.0.attention.wq.weight")
    box = torch.empty(rows.stop - rows.start, columns.stop - columns.start, dtype=torch.float64)
    fill_(box, NORMAL, 3, "layers.0.attention.wq.weight", whole.shape, (rows.start, columns.start))
    assert torch.equal(box, whole[rows, columns].double())


def test_each_parameter_and_seed_has_its_own_values(small_blocks):
    def drawn(seed: int, name: str) -> torch.Tensor:
        return fill_(torch.empty(8, 10), NORMAL, seed, name)

    assert torch.equal(drawn(0, "a.weight"), drawn(0, "a.weight"))
    assert not torch.equal(drawn(0, "a.weight"), drawn(1, "a.weight"))
    assert not torch.equal(drawn(0, "a.weight"), drawn(0, "b.weight"))
    blocks = drawn(0, "a.weight").view(2, 40)
    assert not torch.equal(blocks[0], blocks[1])  # each block its own stream


def test_the_model_keeps_its_distributions():
    cfg = ModelConfig(dim=256, n_layers=2, n_heads=4, n_kv_heads=2, ffn_hidden_dim=512, vocab_size=4096, max_seq_len=64)
    model = Transformer(cfg)
    model.init_weights(seed=0)
    stds = {name: float(p.detach().std()) for name, p in model.named_parameters()}
    assert stds["tok_embeddings.weight"] == pytest.approx(1.0, rel=0.02)
    assert stds["layers.1.attention.wq.weight"] == pytest.approx(0.02, rel=0.02)
    residual = 0.02 / (2 * cfg.n_layers) ** 0.5  # the projections back into the residual stream
    assert stds["layers.1.attention.wo.weight"] == pytest.approx(residual, rel=0.02)
    assert stds["layers.0.feed_forward.w2.weight"] == pytest.approx(residual, rel=0.02)
    bound = 3 * cfg.dim**-0.5
    assert float(model.output.weight.detach().abs().max()) <= bound  # truncated at 3 std
    assert stds["output.weight"] == pytest.approx(cfg.dim**-0.5 * 0.986, rel=0.02)  # a normal cut at 3 std
    assert all(torch.equal(p, torch.ones_like(p)) for name, p in model.named_parameters() if "norm" in name)
    assert model.weight_inits().keys() == dict(model.named_parameters()).keys()
