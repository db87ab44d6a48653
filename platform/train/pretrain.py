"""Pretraining from scratch on the packed shards, following the preset's batch ramp and LR schedule."""
from llamaops.platform.config.preset import Preset
from llamaops.platform.stage import MetricsSink, NoMetrics, StageResult

from .loop import TrainingJob
from .schedule import pretrain_plan
from .stage_runner import stage_job, train_and_publish


def pretrain_job(preset: Preset, data_uri: str, output_uri: str) -> TrainingJob:
    cfg = preset.pretrain
    return stage_job(preset, cfg.layout, pretrain_plan(cfg), data_uri, output_uri, cfg.checkpoint_every_steps,
                     cfg.keep_checkpoints, seed=cfg.seed)


def run_pretrain(preset: Preset, data_uri: str, output_uri: str, metrics: MetricsSink = NoMetrics()) -> StageResult:
    """Train `preset.model` from fresh weights; resumes from the latest checkpoint of an earlier try."""
    job = pretrain_job(preset, data_uri, output_uri)
    return train_and_publish(preset, job, output_uri, metrics, "pretrain")
