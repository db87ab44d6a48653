"""A layout check that needs no GPUs: shard the preset's model for real, on the meta device.

Each distinct pipeline stage (first, middle, last) is built on the meta device (no memory) and
parallelized with the same code as training (tensor parallel, then FSDP2 over the dp x cp ranks)
over a simulated mesh of the layout's full world size: a fake process group, whose collectives do
nothing. The parameter, gradient and optimizer bytes are then counted from the shards rank 0
actually holds; activations come from the analytic count in model/sizing.py, as no step runs, for
the rows one forward runs.

Peaks not counted, because none exceeds training's: a stage's input model is read shard by shard
into the rank's own shards (rank_init.py), with no optimizer state yet; DPO holds no reference
model, only 8 bytes a training response (preference_step.py); the pairwise objectives' forward
without autograd runs the training pass's rows. Rejection
sampling generates on the SFT stage's ranks: the SFT plan adds that step's peak, a rank's share of
the model split for generation and its KV cache (sizing.generation_memory; eval's generation is
not planned).
"""
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
import torch.distributed as dist
from torch.distributed.fsdp import MixedPrecisionPolicy
from torch.distributed.tensor import DTensor

from llamaops.platform.config.model import ModelConfig
from llamaops.platform.config.parallel import ParallelLayout
from llamaops.platform.config.preset import Preset
from llamaops.platform.config.resources import PLANNING_MFU
from llamaops.platform.model.sizing import (
    DTYPE_BYTES,
    GenerationMemory,
    PlannedStage,
    cp_attention_bias_bytes,
    generation_memory,
    microbatch_sequences,
    stage_activation_bytes,
    stage_budget,
    stage_layer_counts,
    training_days,
)
from llamaops.platform.model.transformer import Transformer

from .mesh import build_mesh, rescaled
from .parallelize import PARAM_DTYPES, apply_fsdp, apply_tensor_parallel, fsdp_mesh
from .pipeline import split_stage

MASTER_BYTES = 4  # fp32 weight shards
GRADIENT_BYTES = 4  # fp32 gradient shards (reduced in fp32)
ADAM_BYTES = 8  # two fp32 moments
GATHERED_UNITS = 2  # FSDP holds the current block gathered and prefetches the next


class PlanError(ValueError):
    """The layout or GPU count cannot be planned."""


@dataclass(frozen=True)
class StageMemory:
    """Peak bytes on one GPU (rank 0's shards) of one pipeline stage."""

    stage: int
    layers: int
    local_parameters: int  # elements of the fp32 shards this GPU keeps
    parameters_bytes: int
    gradients_bytes: int
    optimizer_bytes: int
    activations_bytes: int
    loss_weight_bytes: int  # last stage under TP: the output weight gathered for the loss, and its gradient
    attention_bias_bytes: int  # CP with packed documents: one chunk's bias at a time (sizing.cp_attention_bias_bytes)

    @property
    def total_bytes(self) -> int:
        return (self.parameters_bytes + self.gradients_bytes + self.optimizer_bytes + self.activations_bytes
                + self.loss_weight_bytes + self.attention_bias_bytes)


@dataclass(frozen=True)
class TrainingPlan:
    preset: str
    stage: str
    seq_len: int
    layout: ParallelLayout
    busiest: StageMemory
    accelerator_memory_bytes: int
    total_tokens: int
    mfu: float
    training_days: float
    generation: GenerationMemory | None = None  # SFT: rejection sampling on the same ranks

    @property
    def fits(self) -> bool:
        peaks = [self.busiest.total_bytes] + ([self.generation.total_bytes] if self.generation else [])
        return max(peaks) <= self.accelerator_memory_bytes

    def to_dict(self) -> dict:
        return {
            "preset": self.preset,
            "stage": self.stage,
            "seq_len": self.seq_len,
            "tp": self.layout.tp,
            "cp": self.layout.cp,
            "pp": self.layout.pp,
            "dp": self.layout.dp,
            "gpus": self.layout.world_size,
            "activation_checkpointing": self.layout.activation_checkpointing,
            "param_dtype": self.layout.param_dtype,
            "memory_per_gpu_bytes": self.busiest.total_bytes,
            "memory_breakdown": {**asdict(self.busiest), "total_bytes": self.busiest.total_bytes},
            "accelerator_memory_bytes": self.accelerator_memory_bytes,
            "fits": self.fits,
            "total_tokens": self.total_tokens,
            "mfu": self.mfu,
            "training_days": self.training_days,
            **({"generation": self.generation.to_dict()} if self.generation else {}),
        }


def plan_training(
    preset: Preset,
    stage: PlannedStage = "pretrain",
    gpus: int | None = None,
    seq_len: int | None = None,
    mfu: float = PLANNING_MFU,
) -> TrainingPlan:
    """Shard `preset`'s `stage` layout (its data-parallel size rescaled to `gpus` if given) and
    report the busiest GPU's memory and the days to train the stage's token budget at `mfu`."""
    layout, default_seq_len, tokens, batch_tokens = stage_budget(preset, stage)
    if not 0 < mfu <= 1:
        raise PlanError(f"mfu must be in (0, 1], got {mfu}")
    layout = rescale(layout, gpus) if gpus is not None else layout
    seq_len = seq_len or default_seq_len
    sequences = microbatch_sequences(layout, batch_tokens, seq_len)
    with fake_process_group(layout.world_size):
        mesh = build_mesh(layout)
        busiest = max(stage_memories(preset.model, layout, mesh, seq_len, sequences), key=lambda m: m.total_bytes)
    resources = preset.resources
    return TrainingPlan(
        preset=preset.name,
        stage=stage,
        seq_len=seq_len,
        layout=layout,
        busiest=busiest,
        accelerator_memory_bytes=round(resources.accelerator_memory_gib * 2**30),
        total_tokens=tokens,
        mfu=mfu,
        training_days=training_days(
            preset.model, tokens, seq_len, layout.world_size, resources.peak_bf16_tflops * 1e12, mfu
        ),
        generation=sampling_memory(preset) if stage == "sft" else None,
    )


def sampling_memory(preset: Preset) -> GenerationMemory:
    """Rejection sampling's peak on a GPU: the engine's KV cache holds `batch_size` rows of an SFT
    dialog's longest prompt plus the new tokens."""
    post, cfg = preset.post_training, preset.model
    context = min(post.sft.seq_len + post.rejection_sampling.max_new_tokens, cfg.max_seq_len)
    return generation_memory(cfg, post.sampling_tp, post.rejection_sampling.batch_size, context,
                             DTYPE_BYTES[post.sft.layout.param_dtype])


def rescale(layout: ParallelLayout, gpus: int) -> ParallelLayout:
    """The layout on `gpus` GPUs: TP, CP and PP kept, DP whatever is left."""
    try:
        return rescaled(layout, gpus)
    except ValueError as error:
        raise PlanError(f"--gpus {error}") from None


@contextmanager
def fake_process_group(world_size: int) -> Iterator[None]:
    """This process as rank 0 of `world_size` ranks whose collectives do nothing."""
    from torch.testing._internal.distributed.fake_pg import FakeStore

    if dist.is_initialized():
        raise PlanError("cannot plan inside a running process group")
    dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=world_size)
    try:
        yield
    finally:
        dist.destroy_process_group()


def stage_memories(cfg: ModelConfig, layout: ParallelLayout, mesh, seq_len: int,
                   sequences: int = 1) -> list[StageMemory]:
    """Each pipeline stage's peak on rank 0, each forward running `sequences` rows of `seq_len`."""
    counts = stage_layer_counts(cfg.n_layers, layout.pp)
    measured: dict[tuple, tuple[int, list[int]]] = {}
    memories = []
    compute_bytes = DTYPE_BYTES[layout.param_dtype]  # gathered weights and activations
    for stage, layers in enumerate(counts):
        first, last = stage == 0, stage == layout.pp - 1
        key = (layers, first, last)
        if key not in measured:  # middle stages share a shape: shard it once
            measured[key] = shard_stage(cfg, layout, mesh, stage)
        local, units = measured[key]
        loss_weight = 0
        if last and layout.tp > 1:
            loss_weight = 2 * compute_bytes * cfg.vocab_size * cfg.dim * (layout.tp - 1) // layout.tp
        memories.append(StageMemory(
            stage=stage,
            layers=layers,
            local_parameters=local,
            parameters_bytes=MASTER_BYTES * local + compute_bytes * sum(sorted(units)[-GATHERED_UNITS:]),
            gradients_bytes=GRADIENT_BYTES * (local + max(units)),
            optimizer_bytes=ADAM_BYTES * local,
            activations_bytes=round(stage_activation_bytes(cfg, layout, seq_len, stage, sequences, compute_bytes)),
            loss_weight_bytes=loss_weight,
            attention_bias_bytes=round(cp_attention_bias_bytes(layout, seq_len, sequences, compute_bytes)),
        ))
    return memories


def shard_stage(cfg: ModelConfig, layout: ParallelLayout, mesh, stage: int):
    """(elements of rank 0's shards, elements of each FSDP unit once gathered) of one stage, cut
    by the pipeline code's own split."""
    with torch.device("meta"):
        model = split_stage(Transformer(cfg), layout.pp, stage)
    if layout.tp > 1:
        apply_tensor_parallel(model, mesh["tp"])
    shard_mesh = fsdp_mesh(mesh, layout)
    policy = MixedPrecisionPolicy(param_dtype=PARAM_DTYPES[layout.param_dtype], reduce_dtype=torch.float32)
    apply_fsdp(model, shard_mesh, policy)
    blocks = list(model.layers.values())
    embedding = [model.tok_embeddings] if model.tok_embeddings is not None else []
    unit_params = {id(p) for unit in blocks + embedding for p in unit.parameters()}
    root = [p for p in model.parameters() if id(p) not in unit_params]
    units = [_local_elements(unit.parameters()) for unit in blocks + embedding] + [_local_elements(root)]
    return _local_elements(model.parameters()), [elements * shard_mesh.size() for elements in units if elements]


def _local_elements(parameters) -> int:
    return sum((p.to_local() if isinstance(p, DTensor) else p).numel() for p in parameters)

