"""A rank's starting model in one process (train/rank_init.py): built on the meta device and
placed, it holds the weights Transformer.init_weights gives, or an input model's. Multi-rank
layouts: tests/integration/train/test_sharded_init.py."""
from pathlib import Path

import torch

from llamaops.platform.config.parallel import ParallelLayout
from llamaops.platform.model.checkpoint import load_model, save_model
from llamaops.platform.model.transformer import Transformer
from llamaops.platform.train.rank_init import initialised_rank_model, loaded_rank_model

from .micro import micro_preset

CHECKPOINTED = ParallelLayout(activation_checkpointing="full")


def assert_holds(part: Transformer, want: Transformer) -> None:
    assert not any(p.is_meta for p in part.parameters()) and not part.rotary.is_meta
    for (name, got), expected in zip(part.state_dict().items(), want.state_dict().values(), strict=True):
        assert torch.equal(got, expected), name
    assert torch.equal(part.rotary, want.rotary)


def test_one_process_placed_from_meta_starts_from_the_init_weights_of_the_whole_model():
    cfg = micro_preset().model
    placed = initialised_rank_model(cfg, CHECKPOINTED, torch.device("cpu"), seed=5)
    want = Transformer(cfg)
    want.init_weights(seed=5)
    assert_holds(*placed.parts, want)


def test_one_process_placed_from_meta_holds_an_input_models_weights_in_fp32(tmp_path: Path):
    model = Transformer(micro_preset().model)
    model.init_weights(seed=2)
    directory = save_model(model.to(torch.bfloat16), tmp_path / "model")
    placed = loaded_rank_model(directory, CHECKPOINTED, torch.device("cpu"))
    assert_holds(*placed.parts, load_model(directory, dtype=torch.float32))
    assert all(p.dtype == torch.float32 for p in placed.parts[0].parameters())
