"""A rank's share of the starting model on real gloo processes (train/rank_init.py): the model is
built on the meta device and placed, then each rank initialises, or reads from an input model
directory, only its shards. Gathered, every layout gives the one-process model bit for bit
(Transformer.init_weights, load_model), and a rank never holds more than its shards and one init
block. Layout names: tests/unit/train/init_worker.layout_named."""
from pathlib import Path

import pytest

from llamaops.platform.model.checkpoint import write_model_shards
from llamaops.platform.model.transformer import Transformer

from ...unit.train.init_worker import ODD
from ...unit.train.parallel_launch import launch

INIT_WORKER = Path(__file__).parents[2] / "unit" / "train" / "init_worker.py"


def test_on_two_ranks_every_layout_initialises_the_one_process_weights(tmp_path: Path):
    launch(2, ["same", "seed", "dp", "tp2", "pp2", "pp2v2", "cp2"], tmp_path, worker=INIT_WORKER)


def test_on_two_ranks_a_rank_allocates_its_shards_only(tmp_path: Path):
    launch(2, ["memory", "seed", "dp", "tp2"], tmp_path, worker=INIT_WORKER)


def input_model(directory: Path) -> Path:
    """ODD in bf16 (the rank converts to fp32 as load_model does), in three weights files."""
    model = Transformer(ODD)
    model.init_weights(seed=3)
    state = [(name, tensor.bfloat16()) for name, tensor in model.state_dict().items()]
    groups = [dict(state[i::3]) for i in range(3)]
    return write_model_shards(ODD, groups, len(groups), directory)


def test_on_two_ranks_every_layout_reads_only_its_shards_of_an_input_model(tmp_path: Path):
    source = str(input_model(tmp_path / "model"))
    launch(2, ["same", source, "dp", "tp2", "pp2", "pp2v2"], tmp_path, worker=INIT_WORKER)
    launch(2, ["memory", source, "dp", "tp2"], tmp_path, worker=INIT_WORKER)


@pytest.mark.slow
@pytest.mark.parametrize("source", ["seed", "model"])
def test_on_four_ranks_2d_layouts_start_from_the_one_process_model_in_shards(tmp_path: Path, source: str):
    source = str(input_model(tmp_path / "model")) if source == "model" else source
    launch(4, ["same", source, "dp", "tp2", "pp2", "tp2pp2", "tp2cp2"], tmp_path, worker=INIT_WORKER)
    launch(4, ["memory", source, "dp", "tp2", "pp2"], tmp_path, worker=INIT_WORKER)
