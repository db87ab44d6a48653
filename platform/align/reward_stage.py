"""The reward-model stage: a Bradley-Terry reward model initialised from the SFT model, trained
on preference pairs on the training engine with the SFT stage's layout (fine_tuning.py with the
reward objective), with held-out pairwise accuracy before and after, from the rewards the
workers measure."""
import time

from llamaops.platform.config import Preset
from llamaops.platform.stage import MetricsSink, NoMetrics, StageResult
from llamaops.platform.train.preference_step import RewardObjective

from .errors import AlignmentError
from .examples import batch_indices
from .fine_tuning import HELD_OUT, FineTuning, fine_tune, in_pairs, pair_steps, pair_values
from .preferences import EncodedPair, preference_split
from .reward import pairwise_metrics
from .training import check_output_free


def reward_pairs(preset: Preset) -> tuple[list[EncodedPair], list[EncodedPair]]:
    """(train, held-out) pairs of whole dialogs (no formatting tokens masked)."""
    cfg = preset.post_training.reward_model
    return preference_split(preset.post_training.sft, cfg.seed, cfg.steps * cfg.batch_size, cfg.max_eval_pairs, False)


def run_reward_model(
    preset: Preset, sft_model_uri: str, output_uri: str, metrics: MetricsSink = NoMetrics()
) -> StageResult:
    sft_cfg, cfg = preset.post_training.sft, preset.post_training.reward_model
    if cfg.score_token >= preset.model.vocab_size:
        raise AlignmentError(f"post_training.reward_model.score_token={cfg.score_token} is outside the model's"
                             f" {preset.model.vocab_size}-token vocabulary; use a reserved token's id below it")
    check_output_free(output_uri)
    started = time.perf_counter()
    train, held_out = reward_pairs(preset)
    tuned = fine_tune(
        preset,
        FineTuning("reward_model", sft_cfg.layout, sft_cfg.seq_len, cfg.lr, cfg.optimizer, cfg.checkpoint_every_steps,
                   cfg.seed),
        sft_model_uri, output_uri, in_pairs(train), pair_steps(batch_indices(len(train), cfg.batch_size, cfg.steps, cfg.seed)),
        {HELD_OUT: in_pairs(held_out)}, metrics, objective=RewardObjective(cfg.score_token),
    )
    before, after = (pairwise_metrics(*pair_values(values[HELD_OUT]))
                     for values in (tuned.example_values_before, tuned.example_values_after))
    result_metrics = {f"held_out_{name}_before": value for name, value in before.items()}
    result_metrics |= {f"held_out_{name}_after": value for name, value in after.items()}
    result_metrics |= {"train_pairs": float(len(train)), "held_out_pairs": float(len(held_out)),
                       "seconds": time.perf_counter() - started, **tuned.result.metrics}
    report = {"loss": "Bradley-Terry, no margin", "pairs": "chosen = real answer; rejected = its words scrambled",
              "score_token": cfg.score_token, "layout": sft_cfg.layout.describe()}
    return StageResult(outputs={"reward_model": output_uri}, metrics=result_metrics, report=report)
