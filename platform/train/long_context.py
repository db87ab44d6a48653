"""Long-context extension: continue the pretrained model at each longer length of the preset in
turn. The model's Llama 3.1 RoPE scaling (in its config) is what lets positions beyond the
pretraining length work; this stage adapts the weights to it."""
from llamaops.platform.config.preset import Preset
from llamaops.platform.stage import MetricsSink, NoMetrics, StageResult

from .checkpointing import checkpoints_uri
from .loop import TrainingJob
from .schedule import checkpoint_steps, long_context_plan
from .stage_runner import train_and_publish


def long_context_job(preset: Preset, data_uri: str, init_model_uri: str, output_uri: str) -> TrainingJob:
    cfg, optimizer = preset.long_context, preset.pretrain.optimizer
    plan = long_context_plan(cfg)
    return TrainingJob(
        model=preset.model,
        plan=plan,
        data_uri=data_uri,
        checkpoint_root=checkpoints_uri(output_uri),
        checkpoint_steps=checkpoint_steps(len(plan), cfg.checkpoint_every_steps),
        keep_checkpoints=preset.pretrain.keep_checkpoints,
        init_model_uri=init_model_uri,
        weight_decay=optimizer.weight_decay,
        betas=optimizer.betas,
        grad_clip_norm=optimizer.grad_clip_norm,
    )


def run_long_context(
    preset: Preset, data_uri: str, init_model_uri: str, output_uri: str, metrics: MetricsSink = NoMetrics()
) -> StageResult:
    job = long_context_job(preset, data_uri, init_model_uri, output_uri)
    return train_and_publish(preset, preset.long_context.layout, job, output_uri, metrics, "long_context")
