"""Pretraining from scratch on the packed shards, following the preset's batch ramp and LR schedule."""
from llamaops.platform.config.preset import Preset
from llamaops.platform.stage import MetricsSink, NoMetrics, StageResult

from .checkpointing import checkpoints_uri
from .loop import TrainingJob
from .schedule import checkpoint_steps, pretrain_plan
from .stage_runner import train_and_publish


def pretrain_job(preset: Preset, data_uri: str, output_uri: str) -> TrainingJob:
    cfg = preset.pretrain
    plan = pretrain_plan(cfg)
    return TrainingJob(
        model=preset.model,
        plan=plan,
        data_uri=data_uri,
        checkpoint_root=checkpoints_uri(output_uri),
        checkpoint_steps=checkpoint_steps(len(plan), cfg.checkpoint_every_steps),
        keep_checkpoints=cfg.keep_checkpoints,
        seed=cfg.seed,
        weight_decay=cfg.optimizer.weight_decay,
        betas=cfg.optimizer.betas,
        grad_clip_norm=cfg.optimizer.grad_clip_norm,
    )


def run_pretrain(preset: Preset, data_uri: str, output_uri: str, metrics: MetricsSink = NoMetrics()) -> StageResult:
    """Train `preset.model` from fresh weights; resumes from the latest checkpoint of an earlier try."""
    job = pretrain_job(preset, data_uri, output_uri)
    return train_and_publish(preset, preset.pretrain.layout, job, output_uri, metrics, "pretrain")
