"""The reward-model stage on the tiny preset, on the training engine: held-out pairwise accuracy
rises from chance, and the published reward model, loaded in one process, gives the held-out
figures the workers measured."""
import pytest
import torch

from llamaops.platform.align.errors import AlignmentError
from llamaops.platform.align.reward import load_reward_model, pairwise_metrics
from llamaops.platform.align.reward_stage import reward_pairs, run_reward_model
from llamaops.platform.config import load_preset
from llamaops.platform.model import Transformer
from llamaops.platform.model.checkpoint import save_model
from llamaops.platform.store import fetched, staged_output

pytestmark = pytest.mark.slow


def test_reward_model_learns_held_out_preferences(tmp_path):
    torch.set_num_threads(2)
    preset = load_preset("tiny", overrides=["post_training.reward_model.steps=30",
                                            "post_training.reward_model.max_eval_pairs=48"])
    model = Transformer(preset.model)
    model.init_weights(0)
    init_uri, out_uri = (tmp_path / "init").as_uri(), (tmp_path / "rm").as_uri()
    with staged_output(init_uri) as directory:
        save_model(model, directory)

    result = run_reward_model(preset, init_uri, out_uri)
    m = result.metrics
    assert m["held_out_pairwise_accuracy_before"] == 0.0  # zero head: every pair ties
    assert m["held_out_pairwise_accuracy_after"] >= 0.75
    assert m["held_out_bt_loss_after"] < m["held_out_bt_loss_before"]

    _, held_out = reward_pairs(preset)
    with fetched(out_uri) as directory:
        loaded = load_reward_model(directory, preset.post_training.reward_model.score_token).eval()
    with torch.no_grad():
        chosen, rejected = (loaded([getattr(p, side) for p in held_out]) for side in ("chosen", "rejected"))
    figures = pairwise_metrics(chosen, rejected)
    assert figures["pairwise_accuracy"] == m["held_out_pairwise_accuracy_after"]
    assert figures["bt_loss"] == pytest.approx(m["held_out_bt_loss_after"], rel=1e-4)


def test_a_score_token_outside_the_vocabulary_is_refused_before_anything_is_written(tmp_path):
    preset = load_preset("tiny", overrides=["post_training.reward_model.score_token=128256"])
    with pytest.raises(AlignmentError, match="score_token=128256 is outside the model's 128256-token vocabulary"):
        run_reward_model(preset, (tmp_path / "init").as_uri(), (tmp_path / "rm").as_uri())
    assert list(tmp_path.iterdir()) == []
