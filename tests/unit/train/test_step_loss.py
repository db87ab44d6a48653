"""A step's loss is the mean over all its counted targets, however the batch is split: pieces
with no counted target (a pipeline microbatch, a context-parallel rank's chunks) contribute
nothing instead of a 0 / 0."""
from pathlib import Path

import pytest
import torch

from llamaops.platform.config.parallel import ParallelLayout
from llamaops.platform.train.step_loss import counted_in_step, weighted_sum

from .parallel_launch import launch

WORKER = Path(__file__).with_name("rank_model_worker.py")


def test_a_step_without_counted_targets_weighs_nothing():
    counted = counted_in_step(torch.full((2, 4), -100), mesh=None)
    assert counted == 1.0
    assert weighted_sum(torch.tensor(0.0), 2, counted) == 0.0


@pytest.mark.parametrize("layout", [ParallelLayout(pp=2, pp_microbatches=4), ParallelLayout(cp=2)], ids=["pp2", "cp2"])
def test_pieces_without_counted_targets_train_as_one_process(tmp_path: Path, layout: ParallelLayout):
    launch(2, [layout.model_dump_json()], tmp_path, worker=WORKER)
