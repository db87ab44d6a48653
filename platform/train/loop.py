"""The per-worker training loop: the model placed as the job's layout says (train/rank_model.py:
FSDP2, TP, pipeline stages), AdamW, clipping, distributed checkpoints (train/checkpointer.py).

Runs the same in a Ray Train worker (world > 1, process group already up) and in-process
(world 1, for tests). Rank 0 sends each step's figures to the stage's MLflow run as it trains
(tracking/live_metrics.py); the history also travels in the checkpoints, from which the driver
logs whatever did not arrive. The long-context gate's figures are measured by the workers at the
job's gate steps (gate_checks.py) and published next to the checkpoints.
"""
import os
import time
from dataclasses import dataclass

import torch

from llamaops.platform.config.model import ModelConfig
from llamaops.platform.config.parallel import ParallelLayout
from llamaops.platform.config.resources import CPU_RANK_THREADS
from llamaops.platform.model.checkpoint import model_in_part
from llamaops.platform.model.precision import flush_denormals
from llamaops.platform.model.sizing import flops_per_token
from llamaops.platform.model.transformer import Transformer
from llamaops.platform.store import fetched
from llamaops.platform.tracking.live_metrics import LiveMetrics, MetricStream
from llamaops.platform.tracking.step_events import ProgressChannel, ProgressReporter

from .batch_sources import BatchKind, open_batches
from .batches import Batch
from .checkpointer import Checkpointer
from .checkpointing import Progress
from .gate_checks import GateChecks, check_at_step, stage_failed, verdict_baseline
from .held_out import HeldOutChecks, check_held_out
from .metrics import STEP_FIGURES, measured_matmul_peak, model_flops_utilisation, peak_memory_bytes
from .optimizer import adamw
from .parallelize import PARAM_DTYPES
from .preference_step import (
    DPOObjective,
    PairwiseObjective,
    RewardObjective,
    pairwise_forward_backward,
    reference_losses,
    start_reward_head,
)
from .rank_init import initialised_rank_model, loaded_rank_model
from .rank_model import RankModel, check_microbatches, worker_layout
from .resume import resume_checkpoint
from .schedule import StepPlan


@dataclass(frozen=True)
class TrainingJob:
    """Everything a worker needs; picklable, so Ray ships it to each worker as it is."""

    model: ModelConfig
    plan: list[StepPlan]
    data_uri: str  # token shards (batches "token_windows") or an example set (batches "examples")
    checkpoint_root: str
    checkpoint_steps: list[int]  # completed-step counts to checkpoint after; the last plan step included
    keep_checkpoints: int
    layout: ParallelLayout = ParallelLayout()  # the stage's; its DP is rescaled to the number of workers
    async_checkpoints: bool = False  # write checkpoints in the background while training goes on
    init_model_uri: str | None = None  # None: fresh weights from `seed`
    seed: int = 0
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip_norm: float = 1.0
    threads_per_worker: int = CPU_RANK_THREADS
    peak_flops: float | None = None  # per accelerator, for MFU; None: measure the CPU's matmul peak
    max_restarts: int = 2  # Ray Train restarts of the worker group, each from the last checkpoint (stage_job: the preset's)
    fail_after_step: int | None = None  # fault injection: rank 1 dies after this checkpoint, once
    stop_after_step: int | None = None  # a checkpoint step: end right after its checkpoint, as a kill would
    batches: BatchKind = "token_windows"
    gate: GateChecks | None = None  # the long-context gate's figures, measured at its steps (checkpoint steps, or 0)
    held_out: HeldOutChecks | None = None  # fine-tuning's held-out losses, measured at its steps
    objective: PairwiseObjective | None = None  # None: the mean next-token loss; else DPO's or Bradley-Terry's (examples in pairs)
    progress: ProgressChannel | None = None  # a local run's step: rank 0 reports its progress there
    metrics: MetricStream | None = None  # the stage's MLflow run: rank 0 sends each step's figures there


def initial_rank_model(job: TrainingJob, layout: ParallelLayout, device: torch.device) -> RankModel:
    """This rank's share of the job's starting model, placed as `layout` says: fresh weights from
    the job's seed, or the input model's (of an s3:// one the rank downloads the blocks its
    shards lie in). Built on the meta device: only this rank's shards are ever materialised."""
    if job.init_model_uri is None:
        return initialised_rank_model(job.model, layout, device, job.seed)
    with model_in_part(job.init_model_uri) as (directory, fill):
        return loaded_rank_model(directory, layout, device, fill)


def build_optimizer(model: Transformer, job: TrainingJob) -> torch.optim.AdamW:
    return adamw(model, lr=job.plan[0].lr, betas=job.betas, weight_decay=job.weight_decay)


def train_worker(job: TrainingJob, rank: int, world: int, device: torch.device = torch.device("cpu")) -> Progress:
    """Train from the latest complete checkpoint (or the start) to the end of the plan.

    Master weights and optimizer stay fp32; the layout's param_dtype is what FSDP2 gathers the
    weights in for compute (no autocast: on these CPUs bf16 autocast measured 0.65x the fp32
    tokens/s, the casts around the 128K-wide logits costing more than the matmuls save).
    """
    torch.set_num_threads(job.threads_per_worker)
    flush_denormals()
    torch.manual_seed(job.seed)
    layout = worker_layout(job.layout, world)
    check_microbatches(layout, {step.sequences for step in job.plan})
    # Sharded or cut into stages before the optimizer sees the parameters (FSDP replaces them) and
    # before a restore (which loads each rank's shards, whatever layout wrote them).
    placed = initial_rank_model(job, layout, device)
    optimizers = [build_optimizer(part, job) for part in placed.parts]
    checkpointer = Checkpointer(
        job.checkpoint_root, job.checkpoint_steps, job.keep_checkpoints, job.async_checkpoints, rank, world
    )
    with fetched(job.data_uri) as data_dir, LiveMetrics(job.metrics if rank == 0 else None) as live:
        batches = open_batches(job.batches, data_dir, job.seed)
        batches.check(job.plan)
        reference = None  # measured on the input model, before a restore replaces it
        if isinstance(job.objective, DPOObjective):
            reference = reference_losses(placed, job.objective, job.checkpoint_root, data_dir, rank, device)
        if isinstance(job.objective, RewardObjective):
            start_reward_head(placed, job.objective)  # a restore overwrites it
        restored = resume_checkpoint(job.checkpoint_root, job.checkpoint_steps, placed.parts, optimizers)
        progress = restored or Progress(step=0, cursor=0)
        restored_step = restored.step if restored else None
        # The input model's figures (step 0), or those a restart lost (at the restored step).
        figures = _check_gate(placed, job, data_dir, progress.step, rank, device)
        check_held_out(placed, job.held_out, data_dir, job.checkpoint_root, progress.step, rank, device)
        baseline = verdict_baseline(job.gate, job.checkpoint_root, figures)
        stopped = stage_failed(job.gate, figures, baseline)  # restored at a failing stage's end
        reporter = ProgressReporter(job.progress if rank == 0 else None, len(job.plan), first=progress.step)
        while not stopped and progress.step < len(job.plan) and progress.step != job.stop_after_step:
            spec = job.plan[progress.step]
            batch = batches.batch(progress.step, progress.cursor, spec, placed.dp_rank, placed.layout)
            step_reference = None if reference is None else reference[batches.step_examples(progress.step)]
            record = _train_step(placed, optimizers, batch, spec, job, device, step_reference)
            progress.step += 1
            progress.cursor = batches.next_cursor(progress.cursor, spec)
            progress.history.append({"step": progress.step, **record})
            reporter.step(progress.step, {"loss": record["loss"], "tokens_per_second": record["tokens_per_second"]})
            live.step(progress.step, {key: record[key] for key in STEP_FIGURES if key in record})
            checkpointer.poll()
            if progress.step in job.checkpoint_steps:
                checkpointer.save(placed.parts, optimizers, progress)
                figures = _check_gate(placed, job, data_dir, progress.step, rank, device)
                check_held_out(placed, job.held_out, data_dir, job.checkpoint_root, progress.step, rank, device)
                if progress.step == job.stop_after_step or stage_failed(job.gate, figures, baseline):
                    break
                if progress.step == job.fail_after_step and restored_step != progress.step:
                    checkpointer.wait()  # (collective) the restart resumes from this checkpoint
                    if rank == 1:
                        os._exit(1)  # as a killed worker would: no cleanup, no Python exception
    checkpointer.close()
    return progress


def _check_gate(placed: RankModel, job: TrainingJob, data_dir, step: int, rank: int, device) -> dict | None:
    seq_len = job.plan[step - 1].seq_len if step else 0  # the length just trained (the needles')
    return check_at_step(placed, job.gate, job.checkpoint_root, data_dir, step, seq_len, rank, device)


def _train_step(placed: RankModel, optimizers, batch: Batch, spec: StepPlan, job, device,
                reference=None) -> dict[str, float]:
    """One optimizer step; `reference`: the step's examples' reference losses (DPO)."""
    start = time.perf_counter()
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group["lr"] = spec.lr
    layout = placed.layout
    if job.objective is None:
        rank_loss = placed.forward_backward(batch, device)
        figures: dict[str, float] = {}
    else:
        figures = pairwise_forward_backward(placed, batch, job.objective, spec.sequences, reference, device)
    grad_norm = placed.clip_gradients(job.grad_clip_norm)
    for optimizer in optimizers:
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    mean_loss = placed.mean_loss(rank_loss) if job.objective is None else figures.pop("loss")
    seconds = time.perf_counter() - start
    # The positions every DP rank computed (a fine-tuning rank's rows are its own packing); the
    # other ranks of a DP rank's group hold the same batch.
    seq_len = batch.inputs.shape[1]
    tokens = placed.sum_over_ranks(batch.inputs.numel()) * layout.dp // layout.world_size
    memory = peak_memory_bytes(device)
    # On CPU the peak of the dtype the step computes in.
    peak = job.peak_flops or measured_matmul_peak(PARAM_DTYPES[layout.param_dtype], job.threads_per_worker)
    return {
        "loss": mean_loss,
        "lr": spec.lr,
        "grad_norm": grad_norm,
        "seq_len": seq_len,
        "tokens": tokens,
        "seconds": seconds,
        "tokens_per_second": tokens / seconds,
        "mfu": model_flops_utilisation(tokens, seconds, flops_per_token(job.model, seq_len), peak, layout.world_size),
        "peak_flops": peak,
        "memory_bytes": memory,
        "memory_bytes_max": placed.max_over_ranks(memory),  # the busiest rank's peak
        **figures,
    }
