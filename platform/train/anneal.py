"""Annealing: the last tokens with the LR falling linearly to 0, then the average of the last
checkpoints' weights (Polyak averaging) as the output model."""
from llamaops.platform.config.preset import Preset
from llamaops.platform.stage import MetricsSink, NoMetrics, StageResult

from .loop import TrainingJob
from .schedule import anneal_plan
from .stage_runner import stage_job, train_and_publish


def anneal_job(preset: Preset, data_uri: str, init_model_uri: str, output_uri: str) -> TrainingJob:
    cfg = preset.anneal
    seq_len = cfg.seq_len or preset.long_context.seq_lens[-1]
    batch_tokens = cfg.global_batch_tokens or preset.long_context.global_batch_tokens
    plan = anneal_plan(cfg, seq_len, batch_tokens, preset.long_context.layout.dp)
    keep = max(cfg.average_last_checkpoints, preset.pretrain.keep_checkpoints)
    return stage_job(preset, preset.long_context.layout, plan, data_uri, output_uri, cfg.checkpoint_every_steps, keep, init_model_uri)


def run_anneal(
    preset: Preset, data_uri: str, init_model_uri: str, output_uri: str, metrics: MetricsSink = NoMetrics()
) -> StageResult:
    job = anneal_job(preset, data_uri, init_model_uri, output_uri)
    return train_and_publish(
        preset, job, output_uri, metrics, "anneal",
        average_last=preset.anneal.average_last_checkpoints,
    )
