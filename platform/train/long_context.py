"""Long-context extension: continue the pretrained model at each longer length of the preset in
turn. The model's Llama 3.1 RoPE scaling (in its config) is what lets positions beyond the
pretraining length work; this stage adapts the weights to it."""
from llamaops.platform.config.preset import Preset
from llamaops.platform.stage import MetricsSink, NoMetrics, StageResult

from .loop import TrainingJob
from .schedule import long_context_plan
from .stage_runner import stage_job, train_and_publish


def long_context_job(preset: Preset, data_uri: str, init_model_uri: str, output_uri: str) -> TrainingJob:
    cfg = preset.long_context
    return stage_job(preset, cfg.layout, long_context_plan(cfg), data_uri, output_uri, cfg.checkpoint_every_steps,
                     preset.pretrain.keep_checkpoints, init_model_uri)


def run_long_context(
    preset: Preset, data_uri: str, init_model_uri: str, output_uri: str, metrics: MetricsSink = NoMetrics()
) -> StageResult:
    job = long_context_job(preset, data_uri, init_model_uri, output_uri)
    return train_and_publish(preset, job, output_uri, metrics, "long_context")
