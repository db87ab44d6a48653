"""Each stage end to end on a randomly initialised tiny model: it publishes a loadable model and
its objective improves on held-out data. The preset's post-training learning rates are set for the
annealed model the pipeline hands them; a random init moves measurably in 12 steps only at
from-scratch rates, so the tests raise them."""
import shutil

import pytest

from llamaops.platform.align.dpo import run_dpo
from llamaops.platform.align.errors import AlignmentError
from llamaops.platform.align.safety import run_safety
from llamaops.platform.align.sft import run_sft
from llamaops.platform.config import load_preset
from llamaops.platform.model import Transformer
from llamaops.platform.model.checkpoint import load_model, save_model
from llamaops.platform.store import fetched, staged_output
from llamaops.platform.train.errors import TrainingConfigError

pytestmark = pytest.mark.slow

FAST = [
    "post_training.sft.steps=12",
    "post_training.sft.lr=1e-3",
    "post_training.sft.batch_size=4",
    "post_training.sft.max_eval_examples=24",
    "post_training.dpo.steps=12",
    "post_training.dpo.lr=5e-4",
    "post_training.dpo.max_eval_pairs=24",
    "post_training.safety.steps=12",
    "post_training.safety.lr=3e-3",
    "post_training.safety.max_eval_examples=24",
    "post_training.safety.rate_prompts=8",
    "post_training.safety.rate_max_new_tokens=12",
]


class RecordedMetrics:
    def __init__(self) -> None:
        self.steps: list[int] = []

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if step is not None:
            self.steps.append(step)


@pytest.fixture(scope="module")
def preset():
    return load_preset("tiny", overrides=FAST)


@pytest.fixture(scope="module")
def init_uri(tmp_path_factory, preset) -> str:
    model = Transformer(preset.model)
    model.init_weights(0)
    uri = (tmp_path_factory.mktemp("align") / "init").as_uri()
    with staged_output(uri) as directory:
        save_model(model, directory)
    return uri


def _published(uri: str) -> None:
    with fetched(uri) as directory:
        assert load_model(directory).cfg.dim == 128


def test_sft_lowers_held_out_assistant_loss(preset, init_uri, tmp_path):
    sink = RecordedMetrics()
    result = run_sft(preset, init_uri, (tmp_path / "sft").as_uri(), sink)
    assert result.metrics["held_out_loss_after"] < result.metrics["held_out_loss_before"] - 0.1
    assert sink.steps == list(range(1, 13))  # every step logged, once
    _published(result.outputs["model"])


def test_dpo_raises_held_out_reward_margin_and_accuracy(preset, init_uri, tmp_path):
    result = run_dpo(preset, init_uri, (tmp_path / "dpo").as_uri())
    m = result.metrics
    assert m["held_out_dpo_loss_before"] == pytest.approx(0.6931, abs=1e-3)  # policy == reference
    assert m["held_out_dpo_loss_after"] < m["held_out_dpo_loss_before"]
    assert m["held_out_reward_margin_after"] > m["held_out_reward_margin_before"] == 0.0
    assert m["held_out_preference_accuracy_after"] > 0.5
    _published(result.outputs["model"])


def test_safety_lowers_held_out_refusal_and_helpful_losses(preset, init_uri, tmp_path):
    result = run_safety(preset, init_uri, (tmp_path / "safety").as_uri())
    m = result.metrics
    assert m["held_out_refusal_loss_after"] < m["held_out_refusal_loss_before"] - 0.1
    assert m["held_out_borderline_helpful_loss_after"] < m["held_out_borderline_helpful_loss_before"]
    for when in ("before", "after"):
        assert 0 <= m[f"held_out_violation_rate_{when}"] <= 1 and 0 <= m[f"held_out_false_refusal_rate_{when}"] <= 1
    # The flag says what the rates say, against the preset's bound (the rates' values on tiny are
    # pinned by test_safety_rates.py).
    rise = m["held_out_false_refusal_rate_after"] - m["held_out_false_refusal_rate_before"]
    assert m["false_refusal_within_bound"] == float(rise <= preset.post_training.safety.max_false_refusal_increase)
    assert m["false_refusal_within_bound"] == 1.0  # tiny's recipe keeps false refusals where they were
    _published(result.outputs["model"])


def test_existing_output_is_refused_before_training(preset, init_uri):
    with pytest.raises(AlignmentError, match="already exists"):
        run_sft(preset, init_uri, init_uri)


def test_bad_language_is_refused_before_training(init_uri, tmp_path):
    preset = load_preset("tiny", overrides=["post_training.sft.languages=[english, elvish]"])
    with pytest.raises(AlignmentError, match="elvish"):
        run_dpo(preset, init_uri, (tmp_path / "dpo").as_uri())


def test_lora_sft_improves_held_out_loss_and_publishes_a_plain_model(init_uri, tmp_path):
    preset = load_preset("tiny", overrides=[*FAST, "post_training.sft.lora_rank=8", "post_training.sft.lora_alpha=16",
                                            "post_training.sft.lr=3e-3"])
    result = run_sft(preset, init_uri, (tmp_path / "sft-lora").as_uri())
    assert result.metrics["held_out_loss_after"] < result.metrics["held_out_loss_before"]
    _published(result.outputs["model"])


def test_sft_clips_to_the_presets_norm(init_uri, tmp_path):
    """A `--set` of the stage's optimizer reaches it: clipped to almost nothing, Adam's first step
    (lr x g / (|g| + 1e-8)) leaves every weight where it was (at the preset's norm the weights
    move: test_sft_lowers_held_out_assistant_loss)."""
    preset = load_preset("tiny", overrides=[*FAST, "post_training.sft.steps=1",
                                            "post_training.sft.optimizer.grad_clip_norm=1e-12"])
    result = run_sft(preset, init_uri, (tmp_path / "sft").as_uri())
    with fetched(init_uri) as before_dir, fetched(result.outputs["model"]) as after_dir:
        before, after = load_model(before_dir).state_dict(), load_model(after_dir).state_dict()
    moved = max(float((after[name] - before[name]).abs().max()) for name in before)
    assert moved < preset.post_training.sft.lr * 1e-2


def test_sft_stopped_before_its_held_out_figures_resumes_and_measures_them(preset, init_uri, tmp_path):
    """A step killed after its last checkpoint, before the workers measured the held-out loss and
    before the model was published: run again, it trains nothing, measures and publishes."""
    kept = preset.model_copy(update={"pretrain": preset.pretrain.model_copy(update={"keep_checkpoints_after_publish": 1})})
    output = (tmp_path / "sft").as_uri()
    first = run_sft(kept, init_uri, output)
    steps = kept.post_training.sft.steps
    last = tmp_path / "sft-checkpoints" / f"step_{steps:06d}"
    written = last.stat().st_mtime_ns
    shutil.rmtree(tmp_path / "sft")
    shutil.rmtree(tmp_path / "sft-checkpoints" / "held-out" / f"step-{steps}")
    again = run_sft(kept, init_uri, output)
    assert last.stat().st_mtime_ns == written  # restored, not trained again
    assert again.metrics["held_out_loss_after"] == pytest.approx(first.metrics["held_out_loss_after"], rel=1e-6)
    _published(again.outputs["model"])


def test_a_batch_the_layout_cannot_split_is_refused_before_anything_is_written(init_uri, tmp_path):
    preset = load_preset("tiny", overrides=[*FAST, "post_training.sft.batch_size=3"])  # over DP 2
    with pytest.raises(TrainingConfigError, match="sft.layout: a step of 3 sequences does not split over 2 DP ranks"):
        run_sft(preset, init_uri, (tmp_path / "sft").as_uri())
    preset = load_preset("tiny", overrides=[*FAST, "post_training.dpo.batch_size=3"])
    with pytest.raises(TrainingConfigError, match="dpo.layout: a step of 3 pairs does not split into whole pairs over 2"):
        run_dpo(preset, init_uri, (tmp_path / "dpo").as_uri())
    assert list(tmp_path.iterdir()) == []


def test_lora_dpo_raises_the_held_out_margin_in_one_process(init_uri, tmp_path):
    preset = load_preset("tiny", overrides=[*FAST, "post_training.dpo.lora_rank=8", "post_training.dpo.lr=3e-3"])
    result = run_dpo(preset, init_uri, (tmp_path / "dpo-lora").as_uri())
    assert result.report["layout"] == "in-process (LoRA)"
    assert result.metrics["held_out_reward_margin_after"] > result.metrics["held_out_reward_margin_before"] == 0
    _published(result.outputs["model"])
