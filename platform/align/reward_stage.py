"""The reward-model stage: a Bradley-Terry reward model initialised from the SFT model, trained on
preference pairs, with held-out pairwise accuracy before and after."""
import time

from llamaops.platform.config import Preset
from llamaops.platform.model.precision import flush_denormals
from llamaops.platform.stage import MetricsSink, NoMetrics, StageResult
from llamaops.platform.store import staged_output
from llamaops.platform.tracking.step_events import ProgressChannel, ProgressReporter

from .examples import batch_indices
from .preferences import EncodedPair, preference_split
from .reward import RewardModel, bradley_terry_loss, pair_rewards, pairwise_metrics, save_reward_model
from .training import check_output_free, load_input_model, make_optimizer, optimizer_step


def reward_pairs(preset: Preset) -> tuple[list[EncodedPair], list[EncodedPair]]:
    """(train, held-out) pairs, whole dialogs scored (no token masking: the head reads the last token)."""
    cfg = preset.post_training.reward_model
    return preference_split(preset.post_training.sft, cfg.seed, cfg.steps * cfg.batch_size, cfg.max_eval_pairs, False)


def run_reward_model(
    preset: Preset, sft_model_uri: str, output_uri: str, metrics: MetricsSink = NoMetrics()
) -> StageResult:
    cfg = preset.post_training.reward_model
    check_output_free(output_uri)
    flush_denormals()
    started = time.perf_counter()
    train, held_out = reward_pairs(preset)
    model = RewardModel(load_input_model(sft_model_uri))
    before = pairwise_metrics(model, held_out)

    optimizer = make_optimizer(model, cfg.lr, cfg.optimizer)
    model.train()
    reporter = ProgressReporter(ProgressChannel.from_env(), cfg.steps)
    for step, indices in enumerate(batch_indices(len(train), cfg.batch_size, cfg.steps, cfg.seed), start=1):
        chosen, rejected = pair_rewards(model, [train[i] for i in indices])
        loss = bradley_terry_loss(chosen, rejected)
        grad_norm = optimizer_step(model, optimizer, loss, cfg.optimizer.grad_clip_norm)
        metrics.log_metrics({"train_bt_loss": float(loss.detach()), "grad_norm": grad_norm}, step=step)
        reporter.step(step, {"loss": float(loss.detach())})
    after = pairwise_metrics(model, held_out)

    with staged_output(output_uri) as directory:
        save_reward_model(model, directory)
    result_metrics = {f"held_out_{name}_before": value for name, value in before.items()}
    result_metrics |= {f"held_out_{name}_after": value for name, value in after.items()}
    metrics.log_metrics(result_metrics)
    result_metrics |= {"train_pairs": float(len(train)), "held_out_pairs": float(len(held_out)),
                       "seconds": time.perf_counter() - started}
    report = {"loss": "Bradley-Terry, no margin", "pairs": "chosen = real answer; rejected = its words scrambled"}
    return StageResult(outputs={"reward_model": output_uri}, metrics=result_metrics, report=report)
