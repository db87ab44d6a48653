"""This rank's share of the model, as the job's layout [TP, CP, PP, DP] places it, and one step's
forward, backward and gradient clipping over it.

PP = 1: the whole model, parallelized in place (tensor parallel, then FSDP2 over DP; parallelize.py).
PP > 1: this rank's pipeline stages (pipeline.py, FSDP2 over DP each), run by the 1F1B or
interleaved schedule over the step's microbatches of the rank's batch (pipeline.step_microbatches). Either way the loop
sees a list of parts (modules with global layer names, so checkpoints are the same for every
layout), the rank's mean loss and the gradient norm over the whole model.
"""
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import DTensor, Shard

from llamaops.platform.config.parallel import ParallelLayout
from llamaops.platform.model.transformer import Transformer

from .batches import Batch
from .context_parallel import shard_context
from .errors import TrainingConfigError
from .mesh import build_mesh, rescaled
from .parallelize import PARAM_DTYPES, checkpoint_and_compile, parallelize
from .pipeline import build_stages, check_step_microbatches, pipeline_schedule, rank_stage_ids, step_microbatches
from .step_loss import counted_in_step, weighted_sum


def worker_layout(layout: ParallelLayout, world: int) -> ParallelLayout:
    """The job's layout on `world` workers (TP, CP and PP kept, DP what is left), or one line on
    what to change."""
    try:
        return rescaled(layout, world)
    except ValueError as error:
        raise TrainingConfigError(f"layout {layout.describe()} cannot run on {world} workers: {error}") from None


def check_microbatches(layout: ParallelLayout, sequences_per_step: set[int]) -> None:
    """Each DP rank's batch of every step must split into microbatches the schedule can run."""
    if layout.pp == 1:
        return
    for sequences in sorted(sequences_per_step):
        problem = check_step_microbatches(layout, sequences // layout.dp)
        if problem:
            raise TrainingConfigError(f"a step of {sequences} sequences over {layout.dp} DP ranks: {problem}")


class MicrobatchLoss:
    """The pipeline's loss_fn: the last stage's summed microbatch loss, weighted into the step's
    mean (step_loss.py); the schedule sums the microbatches' gradients (scale_grads=False)."""

    def __init__(self, averaged_ranks: int) -> None:
        self.averaged_ranks = averaged_ranks  # the ranks FSDP averages gradients over: dp (x cp)
        self.counted_in_step: torch.Tensor | None = None  # set each step

    def __call__(self, microbatch_sum: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return weighted_sum(microbatch_sum, self.averaged_ranks, self.counted_in_step)


@dataclass
class RankModel:
    parts: list[Transformer]  # the whole model, or this rank's pipeline stages
    layout: ParallelLayout
    mesh: DeviceMesh | None  # None: one process, no process group
    stages: list | None = None  # this rank's PipelineStages when pp > 1
    loss: MicrobatchLoss | None = None
    holds_first: bool = True
    holds_last: bool = True
    _schedule: tuple[tuple[int, ...], Any] | None = field(default=None, repr=False)  # (batch shape, its schedule)

    @property
    def dp_rank(self) -> int:
        return self.mesh["dp"].get_local_rank() if self.mesh is not None else 0

    def rank_inputs(self, batch: Batch, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        """(tokens, targets, the model's other inputs) of this rank's part of `batch`: the whole
        rows with their document ids, or under CP this rank's chunks of every row with explicit
        positions, and the whole rows' document ids (or None) as the CP attention kernel's mask
        (context_parallel.py): per-row tensors, so that a pipeline can split them."""
        inputs, targets, documents = (t.to(device) for t in (batch.inputs, batch.targets, batch.document_ids))
        cp = self.layout.cp
        if cp == 1:
            return inputs, targets, {"document_ids": documents}
        shard = shard_context(inputs, targets, documents, cp, self.mesh["cp"].get_local_rank())
        return shard.tokens, shard.targets, {"positions": shard.positions, "attention_mask": shard.document_ids}

    def forward_backward(self, batch: Batch, device: torch.device, token_weights: torch.Tensor | None = None,
                         score_token: int | None = None) -> torch.Tensor:
        """Gradients of the step's loss: the mean over the counted targets of every DP rank's batch,
        however the batch is split (over DP ranks, into microbatches), so every layout trains the
        same. Returns this rank's share of that loss (zero on ranks without the last stage).
        token_weights [rows, T] (fp32): instead, the step's loss is the sum over every DP rank's
        counted targets of weight x loss, or with `score_token` of weight x that token's logit
        (the caller weighs for the whole step; not under CP)."""
        inputs, targets, model_inputs = self.rank_inputs(batch, device)
        averaged_ranks = self.layout.dp * self.layout.cp  # FSDP averages the gradients over dp x cp ranks
        if token_weights is None:
            counted = counted_in_step(targets, self.mesh)
        else:
            if self.layout.cp > 1:
                raise TrainingConfigError("weighted token losses (DPO) are not implemented under context parallelism")
            counted = torch.ones((), device=device)
            model_inputs["loss_weights"] = token_weights.to(device)
            if score_token is not None:
                model_inputs["score_token"] = score_token
        if self.stages is None:
            share = torch.zeros((), device=device)
            # Gradient accumulation: FSDP2 reduce-scatters each pass's gradients into the shards, so
            # no pass holds more than its rows' activations and the shards' gradients.
            passes = min(self.layout.accumulation_steps, inputs.shape[0])  # the same on every rank
            for pass_inputs, pass_targets, pass_model_inputs in _row_chunks(passes, inputs, targets, model_inputs):
                loss_sum = self.parts[0](pass_inputs, **pass_model_inputs, targets=pass_targets, loss_reduction="sum")
                piece = weighted_sum(loss_sum, averaged_ranks, counted)
                piece.backward()
                share += piece.detach()
            return share / averaged_ranks
        self.loss.counted_in_step = counted
        schedule = self._schedule_for(tuple(inputs.shape))
        losses: list[torch.Tensor] = []
        first = (inputs,) if self.holds_first else ()
        last = {"target": targets, "losses": losses} if self.holds_last else {}
        # Every stage gets its microbatch's document ids (under CP: positions, and the ids as the
        # attention's mask) and targets (used by the last stage's fused loss only).
        schedule.step(*first, **model_inputs, targets=targets, loss_reduction="sum", return_outputs=False, **last)
        if not self.holds_last:
            return torch.zeros((), device=device)
        return torch.stack(losses).sum().detach() / averaged_ranks

    def _schedule_for(self, batch_shape: tuple[int, ...]) -> Any:
        """The schedule for this step's microbatches: the last one while their count and shape stay
        (a schedule fixes both on its first step), else a new one over the same stages (at the
        batch-size ramp's and the context stages' changes)."""
        if self._schedule is None or self._schedule[0] != batch_shape:  # the shape fixes the count too
            count = step_microbatches(self.layout, batch_shape[0])
            schedule = pipeline_schedule(self.stages, self.layout, count, self.loss, scale_grads=False)
            self._schedule = (batch_shape, schedule)
        return self._schedule[1]

    def mean_loss(self, share: torch.Tensor) -> float:
        """The step's loss on every rank: the DP ranks' shares summed (one all-reduce over the world)."""
        if self.mesh is None:
            return float(share)
        counts = self.holds_last and self.mesh["tp"].get_local_rank() == 0  # one share per DP rank
        total = share.clone() if counts else torch.zeros_like(share)
        dist.all_reduce(total)
        return float(total)

    def max_over_ranks(self, value: int) -> int:
        """(Collective) the largest of every rank's `value`."""
        return self._reduced(value, dist.ReduceOp.MAX)

    def sum_over_ranks(self, value: int) -> int:
        """(Collective) every rank's `value` added up."""
        return self._reduced(value, dist.ReduceOp.SUM)

    def _reduced(self, value: int, op: dist.ReduceOp) -> int:
        if self.mesh is None:
            return value
        reduced = torch.tensor(value, dtype=torch.int64, device=self.mesh.device_type)
        dist.all_reduce(reduced, op=op)
        return int(reduced)

    def clip_gradients(self, max_norm: float) -> float:
        """Scale the gradients to a total norm of at most `max_norm`; returns the norm before. The
        norm is over the whole model: every shard (DTensor) and every pipeline stage (the squared
        norms of the PP ranks' stages summed)."""
        parameters = [p for part in self.parts for p in part.parameters()]
        norm = torch.nn.utils.get_total_norm([p.grad for p in parameters if p.grad is not None])
        if isinstance(norm, DTensor):
            norm = norm.full_tensor()
        if self.layout.pp > 1:
            squared = norm**2
            dist.all_reduce(squared, group=self.mesh["pp"].get_group())
            norm = squared.sqrt()
        torch.nn.utils.clip_grads_with_norm_(parameters, max_norm, norm)
        return float(norm)


def _row_chunks(count: int, inputs: torch.Tensor, targets: torch.Tensor, model_inputs: dict[str, Any]):
    """(inputs, targets, model inputs) of `count` consecutive groups of the rows (non-tensor model
    inputs shared). Every DP rank must run as many (FSDP2 gathers collectively): token windows give
    each the same rows, fine-tuning pads each to at least accumulation_steps."""
    if count == 1:
        yield inputs, targets, model_inputs
        return
    tensors = {name: value for name, value in model_inputs.items() if isinstance(value, torch.Tensor)}
    for index in range(count):
        def part(t: torch.Tensor, index: int = index) -> torch.Tensor:
            return torch.tensor_split(t, count)[index]

        yield part(inputs), part(targets), model_inputs | {name: part(t) for name, t in tensors.items()}


def build_rank_model(model: Transformer, layout: ParallelLayout, device: torch.device) -> RankModel:
    """Place `model` (the whole model, the same on every rank, or built on the meta device: then
    rank_init.py gives the parts storage and weights) as `layout` says, whose world size is the
    process group's; the model is sharded in place, or cut into this rank's stages, with the
    layout's parameter dtype, activation checkpointing and compile."""
    if layout.world_size == 1 and not dist.is_initialized():  # one process without a group: no FSDP
        if layout.param_dtype != "fp32":
            raise TrainingConfigError(
                f"param_dtype={layout.param_dtype} needs FSDP2's mixed precision, which needs a process group"
                " (Ray Train or torchrun starts one); use param_dtype=fp32 in a bare process"
            )
        checkpoint_and_compile(model, layout.activation_checkpointing, layout.compile)
        return RankModel([model], layout, None)
    mesh = build_mesh(layout, device.type)
    if layout.pp == 1:
        parallelize(model, mesh, layout, param_dtype=PARAM_DTYPES[layout.param_dtype])
        return RankModel([model], layout, mesh)
    loss = MicrobatchLoss(layout.dp * layout.cp)  # FSDP averages over dp x cp ranks
    stages, parts = build_stages(model, mesh, layout, shard=_stage_sharding(mesh, layout), device=device)
    ids = rank_stage_ids(layout, mesh["pp"].get_local_rank())
    last = layout.pp * layout.pp_stages_per_rank - 1
    return RankModel(parts, layout, mesh, stages, loss, holds_first=0 in ids, holds_last=last in ids)


def _stage_sharding(mesh: DeviceMesh, layout: ParallelLayout):
    if layout.dp == layout.tp == layout.cp == 1 and layout.param_dtype == "fp32":  # nothing to shard
        return lambda stage: checkpoint_and_compile(stage, layout.activation_checkpointing, layout.compile)
    # A stage is parallelized as a whole model of its own: its layout inside the stage has pp = 1.
    # Under bf16, FSDP2 wraps it even over one DP rank: its mixed precision is what keeps fp32
    # master weights under bf16 compute (the stages' activations then travel in bf16).
    inside = layout.model_copy(update={"pp": 1})

    def shard(stage: Transformer) -> None:
        parallelize(stage, mesh, inside, param_dtype=PARAM_DTYPES[layout.param_dtype])
        if layout.tp > 1:
            _whole_sequence_between_stages(stage, mesh["tp"])

    return shard


def _whole_sequence_between_stages(stage: Transformer, tp_mesh: DeviceMesh) -> None:
    """Under sequence parallelism the blocks hand each other sequence shards; between pipeline
    stages the hidden states travel whole, so that a stage's forward sees the whole sequence (the
    length it builds the documents' mask and positions for). A stage all-gathers its output along
    the sequence (backward keeps this rank's slice of the gradient) and its first block takes this
    rank's slice of its input (backward: that slice's gradient, zero elsewhere, which is all the
    previous stage's same TP rank keeps)."""
    blocks = list(stage.layers.values())
    if stage.output is None:
        stage.register_forward_hook(
            lambda module, args, output: DTensor.from_local(output, tp_mesh, [Shard(1)]).full_tensor()
        )
    if stage.tok_embeddings is None:
        def local_slice(module, args):
            hidden = args[0]
            shard = hidden.shape[1] // tp_mesh.size()
            start = tp_mesh.get_local_rank() * shard
            return (hidden[:, start : start + shard], *args[1:])

        blocks[0].register_forward_pre_hook(local_slice)
