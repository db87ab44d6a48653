"""Annealing: the last tokens with the LR falling linearly to 0, then the average of the last
checkpoints' weights (Polyak averaging) as the output model."""
from llamaops.platform.config.preset import Preset
from llamaops.platform.stage import MetricsSink, NoMetrics, StageResult

from .checkpointing import checkpoints_uri
from .loop import TrainingJob
from .schedule import anneal_plan, checkpoint_steps
from .stage_runner import train_and_publish


def anneal_job(preset: Preset, data_uri: str, init_model_uri: str, output_uri: str) -> TrainingJob:
    cfg, optimizer = preset.anneal, preset.pretrain.optimizer
    seq_len = cfg.seq_len or preset.long_context.seq_lens[-1]
    batch_tokens = cfg.global_batch_tokens or preset.long_context.global_batch_tokens
    plan = anneal_plan(cfg, seq_len, batch_tokens, preset.long_context.layout.dp)
    return TrainingJob(
        model=preset.model,
        plan=plan,
        data_uri=data_uri,
        checkpoint_root=checkpoints_uri(output_uri),
        checkpoint_steps=checkpoint_steps(len(plan), cfg.checkpoint_every_steps),
        keep_checkpoints=max(cfg.average_last_checkpoints, preset.pretrain.keep_checkpoints),
        init_model_uri=init_model_uri,
        weight_decay=optimizer.weight_decay,
        betas=optimizer.betas,
        grad_clip_norm=optimizer.grad_clip_norm,
    )


def run_anneal(
    preset: Preset, data_uri: str, init_model_uri: str, output_uri: str, metrics: MetricsSink = NoMetrics()
) -> StageResult:
    job = anneal_job(preset, data_uri, init_model_uri, output_uri)
    return train_and_publish(
        preset, preset.long_context.layout, job, output_uri, metrics, "anneal",
        average_last=preset.anneal.average_last_checkpoints,
    )
