"""Sharded initialisation in one process (train/rank_init.py): built on the meta device and placed,
the model starts from the weights Transformer.init_weights gives. Multi-rank layouts:
tests/integration/train/test_sharded_init.py."""
import torch

from llamaops.platform.config.parallel import ParallelLayout
from llamaops.platform.model.transformer import Transformer
from llamaops.platform.train.rank_init import initialised_rank_model

from .micro import micro_preset


def test_one_process_placed_from_meta_starts_from_the_init_weights_of_the_whole_model():
    cfg = micro_preset().model
    placed = initialised_rank_model(cfg, ParallelLayout(activation_checkpointing="full"), torch.device("cpu"), seed=5)
    want = Transformer(cfg)
    want.init_weights(seed=5)
    (part,) = placed.parts
    assert not any(p.is_meta for p in part.parameters()) and not part.rotary.is_meta
    for (name, got), expected in zip(part.state_dict().items(), want.state_dict().values(), strict=True):
        assert torch.equal(got, expected), name
    assert torch.equal(part.rotary, want.rotary)
