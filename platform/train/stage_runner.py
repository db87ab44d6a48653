"""What the three training stages share: preflight checks, the Ray run, publishing the model."""
from collections import Counter
from dataclasses import replace
from typing import Any

import torch

from llamaops.platform.config.parallel import ParallelLayout
from llamaops.platform.config.preset import Preset
from llamaops.platform.config.resources import PLANNING_MFU
from llamaops.platform.config.stages import FineTuningOptimizer, Optimizer
from llamaops.platform.model.checkpoint import model_in_part, read_model_config
from llamaops.platform.model.sizing import flops_per_token, training_days
from llamaops.platform.model.transformer import Transformer
from llamaops.platform.stage import MetricsSink, StageResult
from llamaops.platform.store import ArtifactError, check_access, fetched, is_complete, staged_output
from llamaops.platform.tracking.live_metrics import logged_through, metric_stream
from llamaops.platform.tracking.step_events import ProgressChannel

from .batch_sources import open_batches
from .checkpointing import (
    checkpoints_uri,
    latest_checkpoint,
    load_progress,
    publish_checkpoint_model,
    remove_checkpoint,
    step_uri,
)
from .context_parallel import ContextParallelError, check_seq_len
from .errors import TrainingConfigError
from .loop import TrainingJob
from .metrics import STEP_FIGURES
from .parallelize import UnsupportedLayout, check_layout
from .rank_model import check_microbatches, worker_layout
from .ray_runner import run_on_ray
from .schedule import StepPlan, checkpoint_steps


def stage_job(
    preset: Preset, layout: ParallelLayout, plan: list[StepPlan], data_uri: str, output_uri: str,
    checkpoint_every: int, keep_checkpoints: int, init_model_uri: str | None = None, seed: int = 0,
    optimizer: Optimizer | FineTuningOptimizer | None = None,
) -> TrainingJob:
    """The TrainingJob of a training stage on `layout`: the preset's model, the stage's optimizer
    settings (default: pretraining's), checkpoint settings and restart budget, checkpoints at the
    sibling `<output>-checkpoints` URI every `checkpoint_every` steps."""
    optimizer = optimizer or preset.pretrain.optimizer
    return TrainingJob(
        model=preset.model,
        plan=plan,
        data_uri=data_uri,
        checkpoint_root=checkpoints_uri(output_uri),
        checkpoint_steps=checkpoint_steps(len(plan), checkpoint_every),
        keep_checkpoints=keep_checkpoints,
        layout=layout,
        async_checkpoints=preset.pretrain.async_checkpoints,
        init_model_uri=init_model_uri,
        seed=seed,
        weight_decay=optimizer.weight_decay,
        betas=optimizer.betas,
        grad_clip_norm=optimizer.grad_clip_norm,
        max_restarts=worker_group_restarts(preset, layout, plan),
        progress=ProgressChannel.from_env(),
    )


def worker_group_restarts(preset: Preset, layout: ParallelLayout, plan: list[StepPlan]) -> int:
    """The stage's Ray Train restart budget: the preset's interruption rate over the days the plan
    takes on the layout's GPUs at the planning MFU (a 405B pretraining plan: about two months)."""
    tokens_by_seq_len = Counter[int]()
    for step in plan:
        tokens_by_seq_len[step.seq_len] += step.tokens
    peak = preset.resources.peak_bf16_tflops * 1e12
    days = sum(training_days(preset.model, tokens, seq_len, layout.world_size, peak, PLANNING_MFU)
               for seq_len, tokens in tokens_by_seq_len.items())
    return preset.restarts.worker_group(layout.world_size, days)


def check_job_layout(preset: Preset, job: TrainingJob, where: str) -> None:
    """The job's plan on its layout: microbatches, CP chunks and TP splits, in one line prefixed
    with the stage's layout setting. Needs no data, model or GPU (a meta-device model)."""
    try:
        layout = worker_layout(job.layout, job.layout.world_size)
        uneven = sorted({step.sequences for step in job.plan if step.sequences % layout.dp})
        if uneven:
            raise TrainingConfigError(f"a step of {uneven[0]} sequences does not split over {layout.dp} DP ranks")
        check_microbatches(layout, {step.sequences for step in job.plan})
        if job.objective is not None:
            _check_pairs(job, layout)
        if layout.cp > 1:
            for seq_len in sorted({step.seq_len for step in job.plan}):
                check_seq_len(seq_len, layout.cp, layout.tp)
        with torch.device("meta"):  # the shapes alone: no memory, whatever the preset's size
            check_layout(Transformer(preset.model), layout.model_copy(update={"pp": 1}))  # inside one stage
    except (TrainingConfigError, UnsupportedLayout, ContextParallelError) as error:
        raise TrainingConfigError(f"{where}.layout: {error}") from None


def _check_pairs(job: TrainingJob, layout) -> None:
    """A preference objective's pairs stay whole on one DP rank, and its losses are per example."""
    split = sorted({step.sequences // 2 for step in job.plan if (step.sequences // layout.dp) % 2})
    if split:
        raise TrainingConfigError(f"a step of {split[0]} pairs does not split into whole pairs over {layout.dp} DP"
                                  " ranks; make the batch size a multiple of the DP ranks")
    if layout.cp > 1:
        raise TrainingConfigError("DPO does not run under context parallelism; use cp=1")


def check_inputs(preset: Preset, job: TrainingJob, output_uri: str, where: str) -> None:
    """Every check a user's input can fail, before Ray starts or any step runs."""
    check_job_layout(preset, job, where)
    for uri in (job.data_uri, output_uri, job.checkpoint_root, job.init_model_uri):
        if uri is not None:
            check_access(uri)
    if is_complete(output_uri):
        raise ArtifactError(f"artifact {output_uri} already exists; write to a new URI")
    with fetched(job.data_uri) as data_dir:
        if job.batches == "token_windows" and not (data_dir / "train.tokens.npy").is_file():
            raise TrainingConfigError(f"{job.data_uri} has no training split; pass the data prep stage's shards")
        open_batches(job.batches, data_dir, job.seed).check(job.plan)
    if job.init_model_uri is not None:
        with model_in_part(job.init_model_uri) as (model_dir, _):  # the config alone: no weights
            if read_model_config(model_dir) != preset.model:
                raise TrainingConfigError(
                    f"the model at {job.init_model_uri} does not have preset '{preset.name}''s model shape;"
                    " pass a model trained with this preset"
                )


def run_job(preset: Preset, job: TrainingJob, stage: str, metrics: MetricsSink, always: bool = False) -> int | None:
    """Train `job` on Ray from its latest checkpoint to the end of its plan (or its stop step),
    unless it is there already (`always`: start the workers anyway, e.g. for the gate figures they
    measure at a restored step); returns the checkpoint step it started from (None: the start).
    Rank 0 sends each step's figures to `metrics` when it is the stage's MLflow run."""
    resumed_from = latest_checkpoint(job.checkpoint_root, job.checkpoint_steps)
    job = replace(job, metrics=metric_stream(metrics))
    if preset.resources.gpus_per_node > 0:  # else each CPU worker measures its own matmul peak
        job = replace(job, peak_flops=preset.resources.peak_bf16_tflops * 1e12)
    if always or resumed_from != (job.stop_after_step or len(job.plan)):
        run_on_ray(job, workers=job.layout.world_size, use_gpu=preset.resources.gpus_per_node > 0, name=stage)
    return resumed_from


def train_and_publish(
    preset: Preset,
    job: TrainingJob,
    output_uri: str,
    metrics: MetricsSink,
    stage: str,
    average_last: int = 1,
) -> StageResult:
    check_inputs(preset, job, output_uri, stage)
    return publish_trained(preset, job, output_uri, metrics, run_job(preset, job, stage, metrics), average_last)


def publish_trained(
    preset: Preset,
    job: TrainingJob,
    output_uri: str,
    metrics: MetricsSink,
    resumed_from: int | None,
    average_last: int = 1,
) -> StageResult:
    """After `job` has run: the model of its last `average_last` checkpoints (averaged) published
    at `output_uri`, its per-step metrics logged and its report; or, when it stopped early on
    purpose, a report of where it stopped."""
    final_step = latest_checkpoint(job.checkpoint_root, job.checkpoint_steps)
    if final_step != len(job.plan):
        # The run stopped early on purpose (stop_after_step): the checkpoints are there to resume.
        return StageResult(outputs={}, report={"stopped_at_step": final_step, "resumed_from_step": resumed_from})
    averaged = job.checkpoint_steps[-average_last:]
    history = load_progress(job.checkpoint_root, final_step).history
    with staged_output(output_uri) as out:
        publish_checkpoint_model(job.checkpoint_root, averaged, out)
    kept = prune_published(job, preset.pretrain.keep_checkpoints_after_publish)
    sent = logged_through(metrics)  # rank 0 sent these live
    for entry in history:
        if entry["step"] > sent:
            metrics.log_metrics({key: entry[key] for key in STEP_FIGURES if key in entry}, step=int(entry["step"]))
    final = _throughput(preset, history, job.layout.world_size)
    final["final_loss"] = history[-1]["loss"]
    report: dict[str, Any] = {
        "loss_history": [entry["loss"] for entry in history],
        "history": history,
        "steps": final_step,
        "tokens": sum(int(entry["tokens"]) for entry in history),
        "resumed_from_step": resumed_from,
        "averaged_checkpoint_steps": averaged,
        "checkpoints_uri": job.checkpoint_root,
        "checkpoints_kept": kept,
    }
    return StageResult(outputs={"model": output_uri}, metrics=final, report=report)


def prune_published(job: TrainingJob, keep: int) -> list[int]:
    """Once the stage's model is published (a resumed run skips the stage), delete its checkpoints
    but the last `keep`; returns the steps kept. Training's retention has left at most its last
    `job.keep_checkpoints`, and only their markers are read: validating one would fetch it whole."""
    left = [step for step in job.checkpoint_steps[-job.keep_checkpoints:]
            if is_complete(step_uri(job.checkpoint_root, step))]
    kept = left[-keep:] if keep else []
    for step in left[: len(left) - len(kept)]:
        remove_checkpoint(job.checkpoint_root, step)
    return kept


def _throughput(preset: Preset, history: list[dict[str, float]], workers: int) -> dict[str, float]:
    """Tokens/s of all the workers and their model-FLOPs utilisation (MFU) against the
    peak the workers used (measured on CPU workers; older checkpoints: the configured one)."""
    seconds = sum(entry["seconds"] for entry in history)
    tokens = sum(entry["tokens"] for entry in history)
    flops = sum(entry["tokens"] * flops_per_token(preset.model, int(entry["seq_len"])) for entry in history)
    # What the workers could have done in each step's time at that step's peak: one peak measured
    # while the machine was busy (the last step's, say) must not inflate the whole stage's MFU.
    configured = preset.resources.peak_bf16_tflops * 1e12
    possible = sum(entry["seconds"] * entry.get("peak_flops", configured) for entry in history) * workers
    return {"tokens_per_second": tokens / seconds, "mfu": flops / possible}
