import pytest
import torch

from llamaops.platform.align.averaging import average_models
from llamaops.platform.align.errors import AlignmentError
from llamaops.platform.config.model import ModelConfig
from llamaops.platform.model import Transformer
from llamaops.platform.model.checkpoint import load_model, save_model
from llamaops.platform.store import staged_output

CFG = ModelConfig(dim=16, n_layers=1, n_heads=2, n_kv_heads=1, ffn_hidden_dim=32, vocab_size=64, max_seq_len=32)


def _saved(tmp_path, name, seed, cfg=CFG):
    model = Transformer(cfg)
    model.init_weights(seed)
    uri = (tmp_path / name).as_uri()
    with staged_output(uri) as directory:
        save_model(model, directory)
    return uri, model


def test_average_is_the_weighted_mean_of_every_weight(tmp_path):
    a_uri, a = _saved(tmp_path, "a", 0)
    b_uri, b = _saved(tmp_path, "b", 1)
    out = average_models([a_uri, b_uri], (tmp_path / "avg").as_uri(), weights=[3, 1])
    averaged = load_model(tmp_path / "avg")
    for key, value in averaged.state_dict().items():
        torch.testing.assert_close(value, 0.75 * a.state_dict()[key] + 0.25 * b.state_dict()[key])
    assert out.endswith("avg")


def test_bad_averaging_input(tmp_path):
    a_uri, _ = _saved(tmp_path, "a", 0)
    other_uri, _ = _saved(tmp_path, "other", 0, CFG.model_copy(update={"dim": 32, "ffn_hidden_dim": 64}))
    with pytest.raises(AlignmentError, match="at least two"):
        average_models([a_uri], (tmp_path / "x").as_uri())
    with pytest.raises(AlignmentError, match="share one model config"):
        average_models([a_uri, other_uri], (tmp_path / "x").as_uri())
    with pytest.raises(AlignmentError, match="one positive weight per model"):
        average_models([a_uri, a_uri], (tmp_path / "x").as_uri(), weights=[1])
    assert not (tmp_path / "x").exists()


def test_cli_average(tmp_path):
    from typer.testing import CliRunner

    from llamaops.cli.main import app

    _saved(tmp_path, "a", 0)
    _saved(tmp_path, "b", 1)
    result = CliRunner().invoke(app, ["model", "average", str(tmp_path / "a"), str(tmp_path / "b"), "--output", str(tmp_path / "avg")])
    assert result.exit_code == 0, result.output
    assert load_model(tmp_path / "avg").cfg == CFG


def test_the_pipelines_average_step_publishes_the_mean_of_its_input_models(tmp_path):
    from llamaops.pipelines.calls import call_stage
    from llamaops.pipelines.stages import stage_spec
    from llamaops.platform.config import load_preset
    from llamaops.platform.stage import NoMetrics

    preset = load_preset("tiny", None, ["post_training.rounds=3", "post_training.average_last_rounds=2"])
    spec = stage_spec(preset, "average")
    assert spec.inputs == ("round2-dpo", "round3-dpo")
    (a_uri, a), (b_uri, b) = _saved(tmp_path, "a", 0), _saved(tmp_path, "b", 1)
    result = call_stage(spec, preset, [a_uri, b_uri], (tmp_path / "avg").as_uri(), NoMetrics())
    assert result.outputs == {"model": (tmp_path / "avg").as_uri()} and result.metrics["averaged_models"] == 2
    for key, value in load_model(tmp_path / "avg").state_dict().items():
        torch.testing.assert_close(value, 0.5 * a.state_dict()[key] + 0.5 * b.state_dict()[key])
