"""A user's bad input fails in one clear error before Ray starts, and leaves no output behind."""
from pathlib import Path

import pytest

from llamaops.platform.config.parallel import ParallelLayout
from llamaops.platform.model.checkpoint import save_model
from llamaops.platform.model.transformer import Transformer
from llamaops.platform.store import ArtifactError, staged_output
from llamaops.platform.train.errors import TrainingConfigError
from llamaops.platform.train.long_context import run_long_context
from llamaops.platform.train.pretrain import run_pretrain

from .micro import micro_preset


def _with_layout(layout: ParallelLayout):
    preset = micro_preset()
    return preset.model_copy(update={"pretrain": preset.pretrain.model_copy(update={"layout": layout})})


@pytest.mark.parametrize(("layout", "error"), [
    (ParallelLayout(cp=3), r"^pretrain.layout: sequence length \d+ is not divisible by 2 x cp x tp = 6"),
    (ParallelLayout(pp=2, pp_microbatches=3), "pp_microbatches=3 does not divide"),
    (ParallelLayout(pp=2, pp_microbatches=1), "the 1F1B schedule needs at least pp=2 microbatches and a DP rank has 1"),
    (ParallelLayout(tp=3), r"^pretrain.layout: tp=3 does not divide n_heads=4; pick a tp that divides it$"),
    (ParallelLayout(tp=2, compile=True), r"^pretrain.layout: compile with tp=2 gives wrong embedding gradients"),
])
def test_layouts_the_trainer_cannot_run_are_refused(tmp_path: Path, shards_uri: str, layout, error):
    with pytest.raises(TrainingConfigError, match=error):
        run_pretrain(_with_layout(layout), shards_uri, (tmp_path / "out").as_uri())
    assert not (tmp_path / "out").exists()


def test_missing_data_is_refused(tmp_path: Path):
    with pytest.raises(ArtifactError, match="does not exist"):
        run_pretrain(micro_preset(), (tmp_path / "missing").as_uri(), (tmp_path / "out").as_uri())
    assert not (tmp_path / "out").exists()


def test_existing_output_is_refused(tmp_path: Path, shards_uri: str):
    with staged_output((tmp_path / "out").as_uri()):
        pass
    with pytest.raises(ArtifactError, match="already exists"):
        run_pretrain(micro_preset(), shards_uri, (tmp_path / "out").as_uri())


def test_init_model_of_another_shape_is_refused(tmp_path: Path, shards_uri: str):
    preset = micro_preset()
    other = Transformer(preset.model.model_copy(update={"dim": 64}))
    other.init_weights(seed=0)
    with staged_output((tmp_path / "other").as_uri()) as out:
        save_model(other, out)
    with pytest.raises(TrainingConfigError, match="model shape"):
        run_long_context(preset, shards_uri, (tmp_path / "other").as_uri(), (tmp_path / "lc").as_uri())
    assert not (tmp_path / "lc").exists()


def test_too_little_data_for_the_longest_window_is_refused(tmp_path: Path, shards_uri: str):
    preset = micro_preset()
    model = Transformer(preset.model)
    model.init_weights(seed=0)
    with staged_output((tmp_path / "init").as_uri()) as out:
        save_model(model, out)
    lc = preset.long_context.model_copy(update={"seq_lens": [512, 32_768], "global_batch_tokens": 65_536})
    big = preset.model.model_copy(update={"max_seq_len": 32_768})
    preset = preset.model_copy(update={"long_context": lc, "model": big})
    with pytest.raises(TrainingConfigError, match="fewer than one window of 32769"):
        run_long_context(preset, shards_uri, (tmp_path / "init").as_uri(), (tmp_path / "lc").as_uri())
