"""Applies a parallel layout to the parallelism-free Transformer, in place.

Order matters and follows torchtitan's: tensor parallel first (it turns weights into DTensors on
the "tp" mesh), then activation checkpointing and torch.compile per block, then FSDP2 last (it
shards whatever it finds, DTensors included, over the "dp" mesh: 2D FSDP x TP).

Context parallelism (train/context_parallel.py) gathers keys and values over the "cp" ranks in
each attention layer; FSDP2 then shards over the dp x cp ranks together.

Tensor parallel is Megatron's with sequence parallel: the residual stream between blocks is split
along the sequence over the TP ranks; each block all-gathers it before wq/wk/wv and w1/w3 (split
by column: heads, hidden units) and reduce-scatters after wo and w2 (split by row). The norms run
on the sequence shards. The output projection's weight is split by vocabulary; the fused chunked
loss (model/loss.py) gathers it and each TP rank computes the loss of its own sequence shard.
"""
import torch
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor, Replicate, Shard
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    PrepareModuleInput,
    RowwiseParallel,
    SequenceParallel,
    parallelize_module,
)
from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts

from llamaops.platform.config.parallel import Checkpointing, ParallelLayout
from llamaops.platform.model.transformer import Transformer, TransformerBlock

from .context_parallel import apply_context_parallel

PARAM_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}

# Selective checkpointing keeps the matmul and attention outputs (costly to recompute) and
# recomputes the cheap elementwise work (norms, rotary, silu) in backward. Under tensor parallel a
# row-parallel matmul (wo, w2: the contraction dim is sharded) gives whole-sequence partial sums;
# keeping those would cost more than no checkpointing, so its reduce-scattered (sequence-sharded)
# result is kept instead and the matmul recomputed (wo's only: w2's output is not needed again).
_SAVED_OPS = {torch.ops.aten.mm.default, torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default,
              torch.ops.aten._scaled_dot_product_efficient_attention.default,
              torch.ops.aten._scaled_dot_product_flash_attention.default,
              torch.ops._c10d_functional.reduce_scatter_tensor.default}


class UnsupportedLayout(ValueError):
    """The layout cannot be applied to this model (or is not implemented yet)."""


def parallelize(
    model: Transformer,
    mesh: DeviceMesh,
    layout: ParallelLayout,
    *,
    param_dtype: torch.dtype = torch.bfloat16,
    reduce_dtype: torch.dtype = torch.float32,
    checkpointing: Checkpointing | None = None,
    compile_blocks: bool | None = None,
) -> Transformer:
    """Shard `model` (fp32 weights, on its device or meta) over `mesh` as `layout` says.

    FSDP2 keeps fp32 master shards, gathers them in `param_dtype` and reduces gradients in
    `reduce_dtype`. `checkpointing` and `compile_blocks` default to the layout's
    activation_checkpointing and compile.
    """
    checkpointing = checkpointing or layout.activation_checkpointing
    compile_blocks = layout.compile if compile_blocks is None else compile_blocks
    check_layout(model, layout.model_copy(update={"compile": compile_blocks}))
    if layout.tp > 1:
        apply_tensor_parallel(model, mesh["tp"])
    if layout.cp > 1:
        apply_context_parallel(model, mesh["cp"])
    checkpoint_and_compile(model, checkpointing, compile_blocks)
    # No casting of forward inputs: the hidden states follow the weights' dtype from the embedding
    # on, and the rotary table must stay fp32 (rope works in complex float).
    policy = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=reduce_dtype, cast_forward_inputs=False)
    apply_fsdp(model, fsdp_mesh(mesh, layout), policy)
    return model


def fsdp_mesh(mesh: DeviceMesh, layout: ParallelLayout) -> DeviceMesh:
    """The ranks FSDP2 shards over: dp, or dp x cp flattened under context parallelism, whose ranks
    hold the same weights but see different tokens (their gradients are averaged like dp's)."""
    if layout.cp == 1:
        return mesh["dp"]
    return mesh["dp", "cp"]._flatten("dp_cp")


def check_layout(model: Transformer, layout: ParallelLayout) -> None:
    cfg = model.cfg
    if layout.compile and layout.tp > 1:
        # Measured on torch 2.13 CPU/gloo: compiled blocks under TP + sequence parallelism give a
        # wrong tok_embeddings gradient (tests/integration/train/test_distributed_equivalence.py).
        raise UnsupportedLayout(
            f"compile with tp={layout.tp} gives wrong embedding gradients (torch 2.13); use tp=1 or compile=false"
        )
    if layout.pp > 1:
        raise UnsupportedLayout(
            f"layout {layout.describe()}: parallelize does not build pipeline stages (pipeline.build_stages does); "
            "use pp=1"
        )
    for what, count in (("n_heads", cfg.n_heads), ("n_kv_heads", cfg.n_kv_heads), ("ffn_hidden_dim", cfg.ffn_hidden_dim)):
        if count % layout.tp:
            raise UnsupportedLayout(f"tp={layout.tp} does not divide {what}={count}; pick a tp that divides it")


def apply_tensor_parallel(model: Transformer, tp_mesh: DeviceMesh) -> None:
    outer = {
        # Vocab-split embedding; its output leaves reduce-scattered along the sequence.
        "tok_embeddings": RowwiseParallel(input_layouts=Replicate(), output_layouts=Shard(1)),
        "norm": SequenceParallel(),
        # Only used for logits (no targets): the loss reads the weight itself.
        "output": ColwiseParallel(input_layouts=Shard(1), output_layouts=Replicate()),
    }
    # A pipeline stage may lack the embedding, or the norm and output.
    parallelize_module(model, tp_mesh, {name: plan for name, plan in outer.items() if getattr(model, name) is not None})
    for block in model.layers.values():
        parallelize_module(block, tp_mesh, _block_plan())


def _block_plan() -> dict:
    # Attention.forward(x, rotary, mask, cache, layer, positions): only x is sequence-split.
    attention_inputs = (Shard(1), None, None, None, None, None)
    return {
        "attention_norm": SequenceParallel(),
        "attention": PrepareModuleInput(
            input_layouts=attention_inputs, desired_input_layouts=(Replicate(), None, None, None, None, None)
        ),
        "attention.wq": ColwiseParallel(),
        "attention.wk": ColwiseParallel(),
        "attention.wv": ColwiseParallel(),
        "attention.wo": RowwiseParallel(output_layouts=Shard(1)),
        "ffn_norm": SequenceParallel(),
        "feed_forward": PrepareModuleInput(input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),)),
        "feed_forward.w1": ColwiseParallel(),
        "feed_forward.w2": RowwiseParallel(output_layouts=Shard(1)),
        "feed_forward.w3": ColwiseParallel(),
    }


def _save_matmuls(ctx, op, *args, **kwargs) -> CheckpointPolicy:
    if op is torch.ops.aten.mm.default and _partial_sums(args[0]):
        return CheckpointPolicy.PREFER_RECOMPUTE
    return CheckpointPolicy.MUST_SAVE if op in _SAVED_OPS else CheckpointPolicy.PREFER_RECOMPUTE


def _partial_sums(left: torch.Tensor) -> bool:
    """Whether a matmul with this left operand gives partial sums: its contraction dim is sharded."""
    return isinstance(left, DTensor) and any(isinstance(p, Shard) and p.dim == left.ndim - 1 for p in left.placements)


def apply_checkpointing(block: TransformerBlock, mode: Checkpointing) -> None:
    """Recompute the block's activations in backward. Wraps `forward` rather than the module, so
    parameter names (and so checkpoints) do not change."""
    if mode not in ("full", "selective"):
        raise ValueError(f"checkpointing must be none, full or selective, got {mode!r}")
    inner = block.forward
    context_fn = (lambda: create_selective_checkpoint_contexts(_save_matmuls)) if mode == "selective" else None
    extra = {"context_fn": context_fn} if context_fn else {}

    def forward(*args, **kwargs):
        return checkpoint(inner, *args, use_reentrant=False, **extra, **kwargs)

    block.forward = forward


def checkpoint_and_compile(model: Transformer, checkpointing: Checkpointing, compile_blocks: bool) -> None:
    """Activation checkpointing, then torch.compile, per block (what a block gets besides sharding)."""
    for block in model.layers.values():
        if checkpointing != "none":
            apply_checkpointing(block, checkpointing)
        if compile_blocks:
            block.compile()


def apply_fsdp(model: Transformer, dp_mesh: DeviceMesh, policy: MixedPrecisionPolicy) -> None:
    """One FSDP unit per block (gathered one at a time, the next prefetched) and the embedding;
    the final norm and the output stay in the root unit: the fused loss reads output.weight
    without calling the module, so no hook of its own would gather it."""
    for block in model.layers.values():
        fully_shard(block, mesh=dp_mesh, mp_policy=policy)
    if model.tok_embeddings is not None:
        fully_shard(model.tok_embeddings, mesh=dp_mesh, mp_policy=policy)
        # The embedding's backward reads only the token ids, never the weight: gathering the
        # vocab x dim table again for backward would be pure traffic (the largest unit of a small
        # model, 2 x 16,384 x 128,256 bytes at 405B before TP).
        model.tok_embeddings.set_unshard_in_backward(False)
    fully_shard(model, mesh=dp_mesh, mp_policy=policy)
