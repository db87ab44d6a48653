"""One round of RM -> rejection sampling -> SFT -> DPO on the tiny preset: every stage improves its
own held-out objective, rejection-sampled dialogs join SFT, and every metric is tracked per round."""
import pytest
import torch

from llamaops.platform.align.rounds import run_rounds
from llamaops.platform.config import load_preset
from llamaops.platform.model import Transformer
from llamaops.platform.model.checkpoint import load_model, save_model
from llamaops.platform.store import fetched, staged_output

pytestmark = pytest.mark.slow

FAST = [
    "post_training.rounds=1",
    "post_training.reward_model.steps=24",
    "post_training.reward_model.max_eval_pairs=32",
    "post_training.rejection_sampling.prompts=8",
    "post_training.rejection_sampling.max_new_tokens=12",
    "post_training.sft.steps=12",
    "post_training.sft.batch_size=4",
    "post_training.sft.max_eval_examples=24",
    "post_training.dpo.steps=12",
    "post_training.dpo.max_eval_pairs=24",
]


class Recorded:
    def __init__(self) -> None:
        self.names: set[str] = set()

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.names |= set(metrics)


def test_one_round_improves_every_stage(tmp_path):
    torch.set_num_threads(2)
    preset = load_preset("tiny", overrides=FAST)
    model = Transformer(preset.model)
    model.init_weights(0)
    init_uri = (tmp_path / "init").as_uri()
    with staged_output(init_uri) as directory:
        save_model(model, directory)

    sink = Recorded()
    result = run_rounds(preset, init_uri, (tmp_path / "rounds").as_uri(), sink)
    m = result.metrics
    assert m["round1.reward_model.held_out_pairwise_accuracy_after"] > m["round1.reward_model.held_out_pairwise_accuracy_before"]
    assert m["round1.rejection_sampling.samples"] == 8 * 4 and m["round1.rejection_sampling.samples_per_second"] > 0
    assert m["round1.rejection_sampling.mean_best_reward"] >= m["round1.rejection_sampling.mean_sample_reward"]
    assert m["round1.sft.rejection_sampled_dialogs"] == 8
    assert m["round1.sft.held_out_loss_after"] < m["round1.sft.held_out_loss_before"]
    assert m["round1.dpo.held_out_reward_margin_after"] > m["round1.dpo.held_out_reward_margin_before"]
    assert {"round1.reward_model.loss", "round1.sft.loss", "round1.dpo.loss", "round1.dpo.reward_margin"} <= sink.names
    with fetched(result.outputs["model"]) as directory:
        assert load_model(directory).cfg == preset.model
