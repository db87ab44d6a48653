"""Distributed checkpoints in one process: damaged ones skipped, full restore. Resharding across
world sizes: tests/integration/train/test_distributed_equivalence.py."""
from pathlib import Path

import pytest
import torch

from llamaops.platform.model.transformer import Transformer
from llamaops.platform.store.uri import local_path
from llamaops.platform.train.checkpointing import (
    STATE_DIR,
    Progress,
    latest_checkpoint,
    load_checkpoint_model,
    restore_checkpoint,
    save_checkpoint,
    step_uri,
)

from .parallel_worker import MICRO


def _saved(root: str, steps: list[int]) -> Transformer:
    model = Transformer(MICRO)
    model.init_weights(seed=0)
    optimizer = torch.optim.AdamW(model.parameters())
    for step in steps:
        model(torch.zeros(1, 4, dtype=torch.long), targets=torch.ones(1, 4, dtype=torch.long)).backward()
        optimizer.step()
        save_checkpoint(root, [model], [optimizer], Progress(step=step, cursor=10 * step))
    return model


def _damage(root: str, step: int, how: str) -> None:
    state = local_path(step_uri(root, step)) / STATE_DIR
    if how == "truncate":
        data = max((p for p in state.iterdir() if p.suffix == ".distcp"), key=lambda p: p.stat().st_size)
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    else:
        (state / ".metadata").unlink()


@pytest.mark.parametrize("how", ["truncate", "no-metadata"])
def test_a_damaged_checkpoint_is_skipped_for_the_previous_good_one(tmp_path: Path, how: str):
    root = (tmp_path / "ckpt").as_uri()
    _saved(root, [1, 2])
    assert latest_checkpoint(root, [1, 2]) == 2
    _damage(root, 2, how)
    assert latest_checkpoint(root, [1, 2]) == 1
    assert latest_checkpoint(root, [2]) is None


def test_restore_loads_model_optimizer_rng_and_progress(tmp_path: Path):
    root = (tmp_path / "ckpt").as_uri()
    torch.manual_seed(7)
    written = _saved(root, [3])
    rng = torch.get_rng_state()
    fresh = Transformer(MICRO)
    optimizer = torch.optim.AdamW(fresh.parameters())
    torch.manual_seed(0)
    progress = restore_checkpoint(root, 3, [fresh], [optimizer])
    assert (progress.step, progress.cursor) == (3, 30)
    assert torch.equal(torch.get_rng_state(), rng)
    assert optimizer.state_dict()["state"][0]["step"] == 1
    for (name, want), got in zip(written.state_dict().items(), load_checkpoint_model(root, 3).state_dict().values()):
        assert torch.equal(got, want), name
    assert all(torch.equal(a, b) for a, b in zip(fresh.parameters(), written.parameters()))
