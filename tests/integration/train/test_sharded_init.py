"""Sharded initialisation on real gloo processes (train/rank_init.py): the model is built on the
meta device, placed, and each rank initialises only its shards; gathered, every layout gives the
one-process Transformer.init_weights bit for bit, and a rank never holds more than its shards and
one init block. Layout names: tests/unit/train/init_worker.layout_named."""
from pathlib import Path

import pytest

from ...unit.train.parallel_launch import launch

INIT_WORKER = Path(__file__).parents[2] / "unit" / "train" / "init_worker.py"


def test_on_two_ranks_every_layout_initialises_the_one_process_weights(tmp_path: Path):
    launch(2, ["same", "dp", "tp2", "pp2", "pp2v2", "cp2"], tmp_path, worker=INIT_WORKER)


def test_on_two_ranks_a_rank_allocates_its_shards_only(tmp_path: Path):
    launch(2, ["memory", "dp", "tp2"], tmp_path, worker=INIT_WORKER)


@pytest.mark.slow
def test_on_four_ranks_2d_layouts_initialise_the_one_process_weights_in_shards(tmp_path: Path):
    (tmp_path / "same").mkdir(), (tmp_path / "memory").mkdir()  # a file store each: a used one hangs a launch
    launch(4, ["same", "dp", "tp2", "pp2", "tp2pp2", "tp2cp2"], tmp_path / "same", worker=INIT_WORKER)
    launch(4, ["memory", "dp", "tp2", "pp2"], tmp_path / "memory", worker=INIT_WORKER)
