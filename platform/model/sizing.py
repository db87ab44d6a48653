"""Analytic sizing of a Llama 3.1-family model: parameters, training FLOPs, per-GPU memory, time.

Pure arithmetic on the config: no tensors, so a 405B answer costs microseconds on a laptop.
"""
from dataclasses import asdict, dataclass
from typing import Literal, NamedTuple

from llamaops.platform.config.model import ModelConfig
from llamaops.platform.config.parallel import ParallelLayout
from llamaops.platform.config.preset import Preset
from llamaops.platform.config.resources import PLANNING_MFU

SECONDS_PER_DAY = 86_400
DTYPE_BYTES = {"bf16": 2, "fp32": 4}  # ParallelLayout.param_dtype: the weights' and activations' compute dtype


@dataclass(frozen=True)
class ParameterCount:
    embedding: int
    attention: int  # wq, wk, wv, wo of every layer
    ffn: int  # w1, w2, w3 of every layer
    norms: int  # two RMSNorms per layer and the final one
    output: int  # untied from the embedding in Llama 3.1

    @property
    def total(self) -> int:
        return self.embedding + self.attention + self.ffn + self.norms + self.output

    @property
    def matmul(self) -> int:
        """Weights that take part in a matmul per token: the layers' projections and the output."""
        return self.attention + self.ffn + self.output


def _attention_parameters(cfg: ModelConfig) -> int:
    kv_dim = cfg.n_kv_heads * cfg.head_dim
    return 2 * cfg.dim * cfg.n_heads * cfg.head_dim + 2 * cfg.dim * kv_dim


def _ffn_parameters(cfg: ModelConfig) -> int:
    return 3 * cfg.dim * cfg.ffn_hidden_dim


def parameter_breakdown(cfg: ModelConfig) -> ParameterCount:
    return ParameterCount(
        embedding=cfg.vocab_size * cfg.dim,
        attention=cfg.n_layers * _attention_parameters(cfg),
        ffn=cfg.n_layers * _ffn_parameters(cfg),
        norms=(2 * cfg.n_layers + 1) * cfg.dim,
        output=cfg.dim * cfg.vocab_size,
    )


def parameter_count(cfg: ModelConfig) -> int:
    return parameter_breakdown(cfg).total


def flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    """Training FLOPs (forward + backward) per token: PaLM's model-FLOPs formula 6N + 12*L*H*Q*T.

    N is the matmul parameters (`ParameterCount.matmul`): every layer's projections plus the output
    projection; the embedding lookup and the norms do no matmul. 2N FLOPs forward, 4N backward.
    12*L*H*Q*T is attention itself: per layer, scores q.k and the weighted sum of v each cost
    2*H*Q*T FLOPs per token forward (H query heads of size Q against T keys; GQA shares keys, not
    work), tripled for the backward. Like PaLM, the Llama 3 MFU numbers and torchtitan, it is not
    halved for the causal mask, so it counts the work a dense kernel would do.
    """
    matmul = parameter_breakdown(cfg).matmul
    return 6.0 * matmul + 12.0 * cfg.n_layers * cfg.n_heads * cfg.head_dim * seq_len


def training_days(
    cfg: ModelConfig,
    total_tokens: int,
    seq_len: int,
    accelerators: int,
    peak_flops_per_accelerator: float,
    mfu: float,
) -> float:
    """Wall-clock days to train on `total_tokens` at a model-FLOPs utilisation `mfu` (0 to 1]."""
    if not 0 < mfu <= 1:
        raise ValueError(f"mfu must be in (0, 1], got {mfu}")
    seconds = flops_per_token(cfg, seq_len) * total_tokens / (accelerators * peak_flops_per_accelerator * mfu)
    return seconds / SECONDS_PER_DAY


def stage_layer_counts(n_layers: int, pp: int) -> list[int]:
    """Layers per pipeline stage, the Llama 3 way: the first and last stages hold one layer fewer
    because they also hold the embedding and the output projection."""
    if pp == 1:
        return [n_layers]
    base, extra = divmod(n_layers + 2, pp)
    if base < 2:  # too few layers to drop one from the ends: split evenly
        base, extra = divmod(n_layers, pp)
        return [base + (stage < extra) for stage in range(pp)]
    counts = [base] * pp
    for i in range(extra):  # leftovers go to the middle stages first
        counts[1 + i % (pp - 1)] += 1
    counts[0] -= 1
    counts[-1] -= 1
    return counts


def activation_bytes_per_token(cfg: ModelConfig, compute_bytes: int = 2) -> int:
    """Bytes one layer keeps for its backward per token, counted tensor by tensor in the style of
    Korthikanti et al. 2022 ("Reducing Activation Recomputation"), adapted to Llama 3.1:

    - the inputs of both RMSNorms and their outputs (the inputs of wq/wk/wv and of w1/w3): 4*d;
    - flash attention (SDPA) keeps q, k, v and its output (the input of wo), never the T^2
      scores: 2*d + 2*kv_dim, plus an fp32 log-sum-exp per head;
    - SwiGLU with a fused silu-mul keeps the w1 and w3 outputs and their product: 3*ffn_hidden_dim;
    - an fp32 rstd per RMSNorm.
    Llama has no dropout, so no masks. Counted this way, a GPT layer (MHA, a 4*d GeLU MLP) keeps
    32*d bytes per token: the paper's 34*s*b*h without its two dropout masks and T^2 terms. Eager
    torch (unfused) also keeps fp32 copies of the norm inputs and the silu output: 4*d + 2*ffn more
    bytes, a third more for the 405B shape; so this count assumes torch.compile or fused kernels.
    """
    kv_dim = cfg.n_kv_heads * cfg.head_dim
    elements = 6 * cfg.dim + 2 * kv_dim + 3 * cfg.ffn_hidden_dim
    return compute_bytes * elements + 4 * (cfg.n_heads + 2)


def selective_activation_bytes_per_token(cfg: ModelConfig, compute_bytes: int = 2) -> int:
    """Bytes one layer keeps per token under selective checkpointing (train/parallelize.py keeps
    the matmul and attention outputs, recomputes the rest): the layer's input, q, k, v, the
    attention output and its fp32 log-sum-exp, the outputs of wo, w1, w3 and w2 (under TP, those
    of wo and w2 reduce-scattered along the sequence, so everything divides by TP)."""
    kv_dim = cfg.n_kv_heads * cfg.head_dim
    elements = 5 * cfg.dim + 2 * kv_dim + 2 * cfg.ffn_hidden_dim
    return compute_bytes * elements + 4 * cfg.n_heads


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak bytes on one GPU of the busiest pipeline stage."""

    parameters_bytes: int
    gradients_bytes: int
    optimizer_bytes: int
    activations_bytes: int
    attention_bias_bytes: int  # CP with packed documents, built per layer (cp_attention_bias_bytes)
    stage: int  # index of the busiest pipeline stage
    stage_layers: int
    micro_batches_in_flight: int

    @property
    def total_bytes(self) -> int:
        return (self.parameters_bytes + self.gradients_bytes + self.optimizer_bytes + self.activations_bytes
                + self.attention_bias_bytes)

    def fits(self, capacity_bytes: float) -> bool:
        return self.total_bytes <= capacity_bytes

    def to_dict(self) -> dict:
        return {**asdict(self), "total_bytes": self.total_bytes}


def memory_per_gpu(
    cfg: ModelConfig,
    layout: ParallelLayout,
    seq_len: int,
    micro_batch_size: int = 1,
    *,
    compute_bytes: int | None = None,
    master_bytes: int = 4,
    gradient_bytes: int = 4,
    optimizer_bytes_per_parameter: int = 8,
    gathered_units: int = 2,
) -> MemoryEstimate:
    """Peak memory of one GPU training `cfg` with `layout`, for the busiest pipeline stage.

    compute_bytes: the layout's param_dtype's (bf16: 2) unless given.
    Parameters are split over TP (embedding and output too, vocab-parallel; the norms are
    replicated) and over PP stages (`stage_layer_counts`). FSDP2 then shards them over the DP x CP
    ranks (context-parallel ranks hold the same weights, so train/parallelize.py shards over both):
    - parameters: fp32 master shards (master_bytes / dp per parameter) plus the bf16 unsharded
      copies of the `gathered_units` largest units FSDP holds at once (the current layer and the
      prefetched next one);
    - gradients: fp32 shards (reduced in fp32) plus one unit's unsharded gradient on its way to
      the reduce-scatter;
    - optimizer: AdamW's two fp32 moments, sharded over DP.
    Activations: `activation_bytes_per_token` per layer for micro_batch_size * seq_len / cp tokens,
    divided by TP (sequence parallel splits the rest of the layer; its all-gathered norm outputs
    are re-gathered in backward, as in Megatron). Under 1F1B, stage i holds pp - i micro-batches
    in flight; interleaved, more (`forwards_in_flight`). Full activation checkpointing keeps only each layer's input, selective
    `selective_activation_bytes_per_token`, plus one layer's working set while it is recomputed. The last stage also holds one micro-batch's vocab-parallel logits in
    bf16 and fp32 for the loss. Context parallelism (train/context_parallel.py, the paper's
    all-gather of keys and values) splits the tokens over CP, and each layer also keeps the whole
    sequence's gathered keys and values for its attention backward; with packed documents, each
    layer briefly builds an attention bias (`cp_attention_bias_bytes`). Not counted:
    CUDA context, communication buffers and fragmentation.
    """
    compute_bytes = compute_bytes or DTYPE_BYTES[layout.param_dtype]
    layer_parameters = (_attention_parameters(cfg) + _ffn_parameters(cfg)) / layout.tp + 2 * cfg.dim
    shards = layout.dp * layout.cp  # FSDP's ranks
    counts = stage_layer_counts(cfg.n_layers, layout.pp)

    def stage_memory(stage: int) -> MemoryEstimate:
        layers = counts[stage]
        units = [layer_parameters] * layers
        if stage == 0:
            units.append(cfg.vocab_size * cfg.dim / layout.tp)
        if stage == layout.pp - 1:
            units.append(cfg.vocab_size * cfg.dim / layout.tp + cfg.dim)
        parameters = sum(units)
        activations = stage_activation_bytes(cfg, layout, seq_len, stage, micro_batch_size, compute_bytes)
        return MemoryEstimate(
            parameters_bytes=round(
                master_bytes * parameters / shards + compute_bytes * sum(sorted(units)[-gathered_units:])
            ),
            gradients_bytes=round(gradient_bytes * (parameters / shards + max(units))),
            optimizer_bytes=round(optimizer_bytes_per_parameter * parameters / shards),
            activations_bytes=round(activations),
            attention_bias_bytes=round(cp_attention_bias_bytes(layout, seq_len, micro_batch_size, compute_bytes)),
            stage=stage,
            stage_layers=layers,
            micro_batches_in_flight=forwards_in_flight(layout, stage),
        )

    return max((stage_memory(stage) for stage in range(layout.pp)), key=lambda m: m.total_bytes)


def forwards_in_flight(layout: ParallelLayout, stage: int) -> int:
    """Microbatch forwards whose activations pipeline rank `stage` holds at its peak, each through
    one of its `pp_stages_per_rank` stages. 1F1B: pp - stage before its first backward. torch's
    interleaved 1F1B: (v - 1) x a round's microbatches + 2 x (pp - 1 - stage) warm-up forwards,
    then one more before the first backward (so even with v = 1 it holds about twice 1F1B's).
    Either way no more than the step's forwards (pp_microbatches x v)."""
    microbatches, v = layout.pp_microbatches, layout.pp_stages_per_rank
    if layout.pp == 1:
        return 1
    if layout.pp_schedule == "1f1b":
        return min(microbatches, layout.pp - stage)
    per_round = microbatches // max(1, microbatches // layout.pp)
    return min((v - 1) * per_round + 2 * (layout.pp - 1 - stage) + 1, microbatches * v)


def stage_activation_bytes(
    cfg: ModelConfig, layout: ParallelLayout, seq_len: int, stage: int, micro_batch_size: int = 1, compute_bytes: int = 2
) -> float:
    """Activation bytes one GPU of pipeline stage `stage` holds at its peak (see memory_per_gpu)."""
    tokens = micro_batch_size * seq_len / layout.cp
    # Keys and values of the other CP ranks' tokens, gathered for attention (own tokens' are counted).
    gathered_kv = compute_bytes * 2 * cfg.n_kv_heads * cfg.head_dim * micro_batch_size * (seq_len - tokens)
    layer_activations = (activation_bytes_per_token(cfg, compute_bytes) * tokens + gathered_kv) / layout.tp
    layers = stage_layer_counts(cfg.n_layers, layout.pp)[stage]
    # in whole-stage equivalents: under interleaving each forward runs one of the rank's v stages
    in_flight = forwards_in_flight(layout, stage) / layout.pp_stages_per_rank
    if layout.activation_checkpointing == "none":
        activations = layers * in_flight * layer_activations
    else:  # what each layer keeps, plus one layer's whole working set while it is recomputed
        kept_per_token = compute_bytes * cfg.dim
        if layout.activation_checkpointing == "selective":
            kept_per_token = selective_activation_bytes_per_token(cfg, compute_bytes)
        activations = layers * in_flight * kept_per_token * tokens / layout.tp + layer_activations
    if stage == layout.pp - 1:
        activations += tokens * (compute_bytes * cfg.dim + (compute_bytes + 4) * cfg.vocab_size) / layout.tp
    return activations


def cp_attention_bias_bytes(layout: ParallelLayout, seq_len: int, micro_batch_size: int = 1, compute_bytes: int = 2) -> float:
    """Peak bytes of context parallelism's same-document attention bias on one GPU (packed
    documents; train/context_parallel.py). Each layer builds, for one local chunk of
    c = seq / (2 cp) queries at a time, a [c, key prefix] additive bias in the compute dtype, and
    builds it again in backward; nothing is held between the two. The longest prefix is the whole
    sequence (rank 0's mirror chunk), so the peak is c x seq elements per sequence, whatever the
    pipeline's micro-batches in flight or TP. Plain causal rows need none (prefix attention has no
    mask). The dense [seq / cp, seq] bool mask this replaced was held per micro-batch in flight
    (15 GiB at 128K over CP 16 with 15 in flight), and SDPA kept a float copy of it per layer."""
    if layout.cp == 1:
        return 0.0
    return micro_batch_size * seq_len / (2 * layout.cp) * seq_len * compute_bytes


@dataclass(frozen=True)
class SizingReport:
    """Everything `llamaops model info` shows about one preset's training stage."""

    preset: str
    stage: str
    seq_len: int
    layout: ParallelLayout
    parameters: ParameterCount
    flops_per_token: float
    memory: MemoryEstimate
    accelerator_memory_bytes: int
    total_tokens: int
    mfu: float
    training_days: float

    def to_dict(self) -> dict:
        return {
            "preset": self.preset,
            "stage": self.stage,
            "seq_len": self.seq_len,
            "parameters": self.parameters.total,
            "parameters_breakdown": asdict(self.parameters),
            "flops_per_token": self.flops_per_token,
            "layout": {**self.layout.model_dump(), "world_size": self.layout.world_size},
            "memory_per_gpu_bytes": self.memory.total_bytes,
            "memory_breakdown": self.memory.to_dict(),
            "accelerator_memory_bytes": self.accelerator_memory_bytes,
            "fits": self.memory.fits(self.accelerator_memory_bytes),
            "total_tokens": self.total_tokens,
            "mfu": self.mfu,
            "training_days": self.training_days,
        }


@dataclass(frozen=True)
class GenerationMemory:
    """Peak bytes on one GPU of a model split over `tp` ranks for generation
    (serve/tensor_parallel.py): its weight shards, the engine's KV cache for `rows` requests of
    `context` tokens, and the gathered fp32 logits of a decode step."""

    tp: int
    rows: int
    context: int
    weights_bytes: int
    kv_cache_bytes: int
    logits_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.kv_cache_bytes + self.logits_bytes

    def to_dict(self) -> dict:
        return {**asdict(self), "total_bytes": self.total_bytes}


def generation_memory(cfg: ModelConfig, tp: int, rows: int, context: int, compute_bytes: int = 2,
                      fp8_layers: int = 0) -> GenerationMemory:
    """A tensor-parallel rank holds the embedding and norms whole, 1/tp of the projections and the
    output, and its share of the key/value heads (one, replicated, when tp exceeds them).
    fp8_layers: blocks whose feed-forward weights are one byte each, plus an fp32 scale per row
    of the rank's shards (serve/fp8.py)."""
    p = parameter_breakdown(cfg)
    kv_heads = max(1, cfg.n_kv_heads // tp)
    attention = cfg.n_layers * (2 * cfg.dim * cfg.n_heads * cfg.head_dim // tp + 2 * cfg.dim * kv_heads * cfg.head_dim)
    ffn_layer = _ffn_parameters(cfg) // tp
    wide = p.embedding + p.norms + attention + (cfg.n_layers - fp8_layers) * ffn_layer + p.output // tp
    fp8 = fp8_layers * (ffn_layer + 4 * (2 * cfg.ffn_hidden_dim // tp + cfg.dim))
    kv_cache = 2 * cfg.n_layers * kv_heads * cfg.head_dim * rows * context
    return GenerationMemory(tp, rows, context, compute_bytes * wide + fp8, compute_bytes * kv_cache,
                            4 * rows * cfg.vocab_size)


PlannedStage = Literal["pretrain", "long_context", "sft", "reward_model", "dpo"]
PLANNED_STAGES: tuple[str, ...] = PlannedStage.__args__  # type: ignore[attr-defined]

# Post-training's compute, in tokens of a plain training step (6N FLOPs a token): the pairwise
# objectives add a forward without autograd (2N) to every step (train/preference_step.py); DPO's
# reference pass is one more forward over its training responses.
PAIRWISE_STEP_COST = 4 / 3
DPO_REFERENCE_COST = 1 / 3


class StageBudget(NamedTuple):
    layout: ParallelLayout
    seq_len: int  # the stage's final sequence length
    tokens: int  # its token budget
    batch_tokens: int  # tokens of one optimizer step (its global batch, at the final length)


def stage_budget(preset: Preset, stage: str) -> StageBudget:
    """A preset's training stage as the plan sees it. A post-training budget is an upper bound
    (every example as long as the stage's seq_len), in tokens of a plain training step."""
    post = preset.post_training
    if stage == "pretrain":
        pretrain = preset.pretrain
        return StageBudget(pretrain.layout, pretrain.seq_len, pretrain.total_tokens,
                           pretrain.batch_ramp[-1].global_batch_tokens)
    if stage == "long_context":
        lc = preset.long_context
        return StageBudget(lc.layout, lc.seq_lens[-1], lc.total_tokens, lc.global_batch_tokens)
    seq_len = post.sft.seq_len
    if stage == "sft":
        batch = post.sft.batch_size * seq_len
        return StageBudget(post.sft.layout, seq_len, post.sft.steps * batch, batch)
    if stage == "reward_model":  # on the SFT stage's layout
        batch = 2 * post.reward_model.batch_size * seq_len
        return StageBudget(post.sft.layout, seq_len, round(post.reward_model.steps * batch * PAIRWISE_STEP_COST), batch)
    if stage == "dpo":
        batch = 2 * post.dpo.batch_size * seq_len
        tokens = round(post.dpo.steps * batch * (PAIRWISE_STEP_COST + DPO_REFERENCE_COST))
        return StageBudget(post.dpo.layout, seq_len, tokens, batch)
    raise ValueError(f"unknown stage '{stage}'; choose one of {', '.join(PLANNED_STAGES)}")


def microbatch_sequences(layout: ParallelLayout, batch_tokens: int, seq_len: int) -> int:
    """Sequences one forward of a rank runs: one of the passes its DP rank's share of the step's
    batch is split into (accumulation_steps, or under PP the schedule's microbatches:
    train/pipeline.step_microbatches)."""
    rows = max(1, -(-batch_tokens // seq_len) // layout.dp)
    passes = layout.accumulation_steps if layout.pp == 1 else layout.pp_microbatches
    return -(-rows // min(passes, rows))


def size_preset(
    preset: Preset,
    stage: PlannedStage = "pretrain",
    seq_len: int | None = None,
    mfu: float = PLANNING_MFU,
) -> SizingReport:
    """Size a preset's pretraining (8K) or long-context stage at its final sequence length, or at
    `seq_len`, on that stage's layout and token budget."""
    layout, default_seq_len, tokens, batch_tokens = stage_budget(preset, stage)
    seq_len = seq_len or default_seq_len
    if seq_len < 1:
        raise ValueError(f"seq_len must be positive, got {seq_len}")
    resources = preset.resources
    return SizingReport(
        preset=preset.name,
        stage=stage,
        seq_len=seq_len,
        layout=layout,
        parameters=parameter_breakdown(preset.model),
        flops_per_token=flops_per_token(preset.model, seq_len),
        memory=memory_per_gpu(preset.model, layout, seq_len, microbatch_sequences(layout, batch_tokens, seq_len)),
        accelerator_memory_bytes=round(resources.accelerator_memory_gib * 2**30),
        total_tokens=tokens,
        mfu=mfu,
        training_days=training_days(
            preset.model, tokens, seq_len, layout.world_size, resources.peak_bf16_tflops * 1e12, mfu
        ),
    )
