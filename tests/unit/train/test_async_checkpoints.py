"""Asynchronous checkpoints (DCP async_save) in one process: published only once written, and the
state saved is the step's even though training goes on meanwhile. (A process killed mid-save:
tests/integration/train/test_async_checkpoint_killed.py.)"""
from dataclasses import replace
from pathlib import Path

import torch

from llamaops.platform.model.transformer import Transformer
from llamaops.platform.store import is_complete
from llamaops.platform.train.checkpointer import Checkpointer
from llamaops.platform.train.checkpointing import Progress, latest_checkpoint, load_checkpoint_model, step_uri
from llamaops.platform.train.loop import train_worker
from llamaops.platform.train.pretrain import pretrain_job

from .parallel_worker import MICRO
from .test_loop import short_pretrain


def test_the_preset_knob_reaches_the_job(tmp_path: Path, shards_uri: str):
    preset = short_pretrain()
    assert pretrain_job(preset, shards_uri, (tmp_path / "a").as_uri()).async_checkpoints
    off = preset.model_copy(update={"pretrain": preset.pretrain.model_copy(update={"async_checkpoints": False})})
    assert not pretrain_job(off, shards_uri, (tmp_path / "b").as_uri()).async_checkpoints


def test_an_async_checkpoint_is_visible_only_once_published(tmp_path: Path):
    root = (tmp_path / "ckpt").as_uri()
    model = Transformer(MICRO)
    model.init_weights(seed=0)
    optimizer = torch.optim.AdamW(model.parameters())
    checkpointer = Checkpointer(root, [1, 2], keep=1, asynchronous=True, rank=0, world=1)
    checkpointer.save([model], [optimizer], Progress(step=1, cursor=0))
    assert not is_complete(step_uri(root, 1))
    assert latest_checkpoint(root, [1, 2]) is None
    checkpointer.save([model], [optimizer], Progress(step=2, cursor=0))  # waits for step 1, publishes it
    assert latest_checkpoint(root, [1, 2]) == 1
    checkpointer.close()
    assert latest_checkpoint(root, [1, 2]) == 2
    assert not is_complete(step_uri(root, 1))  # keep=1


def test_an_async_save_copies_the_state_before_training_changes_it(tmp_path: Path):
    root = (tmp_path / "ckpt").as_uri()
    model = Transformer(MICRO)
    model.init_weights(seed=0)
    saved = {name: t.clone() for name, t in model.state_dict().items()}
    checkpointer = Checkpointer(root, [1], keep=1, asynchronous=True, rank=0, world=1)
    checkpointer.save([model], [torch.optim.AdamW(model.parameters())], Progress(step=1, cursor=0))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)  # the next optimizer step, while the files may still be written
    checkpointer.close()
    for name, got in load_checkpoint_model(root, 1).state_dict().items():
        assert torch.equal(got, saved[name]), name


def test_an_async_checkpoint_holds_its_steps_state_while_training_goes_on(tmp_path: Path, shards_uri: str):
    preset = short_pretrain()
    job = pretrain_job(preset, shards_uri, (tmp_path / "straight").as_uri())
    assert job.async_checkpoints
    straight = train_worker(replace(job, keep_checkpoints=len(job.checkpoint_steps)), rank=0, world=1)
    stopped_job = pretrain_job(preset, shards_uri, (tmp_path / "stopped").as_uri())
    train_worker(replace(stopped_job, async_checkpoints=False, stop_after_step=3), rank=0, world=1)
    written_async = load_checkpoint_model(job.checkpoint_root, 3).state_dict()
    for name, want in load_checkpoint_model(stopped_job.checkpoint_root, 3).state_dict().items():
        assert torch.equal(written_async[name], want), name
    assert straight.step == len(job.plan)
