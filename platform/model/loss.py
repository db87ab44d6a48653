"""The language-model loss fused with the output projection, chunk by chunk of tokens.

With a 128,256-token vocabulary the logits dominate a small model's step: [tokens, vocab] in the
compute dtype, an fp32 copy for the loss, fp32 log-probabilities and two fp32 gradients of the same
size. `linear_cross_entropy` computes `F.cross_entropy(hidden @ weight.T, targets)` without ever
holding more than one chunk of them: for each chunk of tokens it computes the logits, their fp32
log-softmax, the loss, and straight away the gradient of the logits, which it multiplies into the
gradients of the hidden states and of the weight. Backward then only rescales those (the FLOPs are
the unfused ones: three matmuls, no recomputation). Without autograd (no_grad, or inputs that do
not require grad) it computes the loss alone; with autograd the gradients are paid for in forward,
so a loss computed with grad enabled but never backpropagated costs three matmuls, not one.
On a CPU the softmax and gradient passes go over a few rows at a time, so that after the first
pass they hit the core's cache.

Numerics follow the unfused reference: logits in the compute dtype (fp32 accumulation inside the
matmul), upcast to fp32 for the softmax and the loss, the logits' gradient rounded to the compute
dtype once, after scaling. The weight's gradient is summed over the chunks in the weight's dtype
(addmm with beta=1), so in bf16 it is rounded once per chunk instead of once; `chunk_size` bounds
how many chunks there are.
"""
from typing import cast

import torch
from torch import nn
from torch.distributed.tensor import DTensor, Partial, Replicate, Shard

IGNORE_INDEX = -100


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    ignore_index: int = IGNORE_INDEX,
    reduction: str = "mean",
    chunk_size: int | None = None,
    count_hits: bool = False,
    token_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy of the logits `hidden @ weight.T` against `targets`, computed in chunks.

    hidden [..., dim], weight [vocab, dim], targets [...] (same leading shape as hidden) with
    `ignore_index` for positions without a target. reduction "mean" (over counted targets, as
    F.cross_entropy), "sum", or "none" (evaluation, without autograd: each position's loss, 0
    where not counted, in the targets' shape). token_weights (fp32, the targets' shape; with
    "sum"): the weighted sum of the counted positions' losses, for objectives whose gradient is a
    per-token weighting of the next-token loss's (DPO's, train/preference_step.py). chunk_size: tokens per chunk, by default 256 on a CPU and 1024
    on an accelerator (where bigger matmuls pay: an H200 runs 4096 x 2048 -> 128,256 in bf16
    within 10% of the unfused loss at 1024, with a quarter of its memory). A chunk holds
    chunk_size x vocab logits in the compute dtype, plus two fp32 buffers of that size on an
    accelerator (of a few rows on a CPU).
    count_hits (evaluation, without autograd): returns [loss, hits] instead, hits being the
    counted targets that are their row's argmax logit, i.e. what greedy decoding would pick.
    """
    if isinstance(hidden, DTensor):
        return _sequence_parallel(hidden, weight, targets, ignore_index, reduction, chunk_size, count_hits,
                                  token_weights)
    if chunk_size is None:
        chunk_size = 256 if hidden.device.type == "cpu" else 1024
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if token_weights is not None and (reduction != "sum" or token_weights.shape != targets.shape):
        raise ValueError("token_weights need reduction 'sum' and the targets' shape")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    if hidden.shape[:-1] != targets.shape:
        raise ValueError(f"hidden {tuple(hidden.shape)} and targets {tuple(targets.shape)} do not match")
    shape = targets.shape
    hidden = hidden.reshape(-1, hidden.shape[-1])
    targets = targets.reshape(-1)
    if token_weights is not None:
        token_weights = token_weights.reshape(-1).to(torch.float32)
    device_type = hidden.device.type
    if torch.is_autocast_enabled(device_type):
        # What nn.Linear would do under autocast: the matmuls run in the autocast dtype. The casts
        # stay outside the fused function so autograd takes the gradients back to fp32.
        dtype = torch.get_autocast_dtype(device_type)
        hidden, weight = hidden.to(dtype), weight.to(dtype)
    elif hidden.dtype != weight.dtype:
        raise ValueError(f"hidden is {hidden.dtype} but weight is {weight.dtype}")
    if torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad):
        if count_hits or reduction == "none":
            raise ValueError("count_hits and reduction 'none' are for evaluation: call under torch.no_grad()")
        return _LinearCrossEntropy.apply(hidden, weight, targets, ignore_index, reduction, chunk_size, token_weights)
    with torch.autocast(device_type, enabled=False):
        loss, _, _, hits = _chunked(
            hidden, weight, targets, ignore_index, reduction, chunk_size, (False, False), count_hits, token_weights
        )
    if reduction == "none":
        return loss.reshape(shape)
    return torch.stack((loss, hits)) if count_hits else loss


def _sequence_parallel(hidden, weight, targets, ignore_index, reduction, chunk_size, count_hits,
                       token_weights) -> torch.Tensor:
    """The loss when a tensor-parallel model (train/parallelize.py) hands over hidden states split
    along the sequence (a DTensor, Shard(1) on a 1-D mesh) and a vocab-split output weight (a
    DTensor on the same mesh). Each rank gathers the weight and computes the summed loss of its own
    sequence shard, fused and chunked as usual; the sums are then added up over the ranks. In
    backward the weight's gradient, partial on each rank, is reduce-scattered back to its shards.
    The logits' FLOPs are those of a vocab-parallel loss; the weight is held whole for the loss.
    """
    mesh = hidden.device_mesh
    if mesh.ndim != 1 or tuple(hidden.placements) != (Shard(1),):
        raise ValueError(f"sequence-parallel hidden states must be Shard(1) on a 1-D mesh, got {hidden.placements}")
    if not isinstance(weight, DTensor):
        raise ValueError("with sequence-parallel hidden states the output weight must be a DTensor on the same mesh")
    seq, ranks = targets.shape[1], mesh.size()
    if seq % ranks:
        raise ValueError(f"sequence length {seq} is not divisible by the {ranks} tensor-parallel ranks")
    shard = seq // ranks
    start = mesh.get_local_rank() * shard
    local_weight = weight.redistribute(placements=[Replicate()]).to_local(grad_placements=[Partial()])
    local_weights = None if token_weights is None else token_weights[:, start : start + shard]
    local_sum = linear_cross_entropy(
        hidden.to_local(), local_weight, targets[:, start : start + shard],
        ignore_index=ignore_index, reduction="none" if reduction == "none" else "sum", chunk_size=chunk_size,
        count_hits=count_hits, token_weights=local_weights,
    )
    if reduction == "none":  # each rank's positions' losses, gathered along the sequence
        return DTensor.from_local(local_sum, mesh, [Shard(1)]).full_tensor()
    total = DTensor.from_local(local_sum, mesh, [Partial()]).full_tensor()  # [loss, hits] with count_hits
    if reduction == "sum":
        return total
    count = (targets != ignore_index).sum(dtype=torch.float32)  # every rank has all targets
    return torch.stack((total[0] / count, total[1])) if count_hits else total / count


def token_logits(hidden: torch.Tensor, weight: torch.Tensor, token: int,
                 token_weights: torch.Tensor | None = None) -> torch.Tensor:
    """The logit of one vocabulary entry, `token`, at every position: hidden [B, T, dim] times
    weight[token] (fp32, [B, T]); with token_weights [B, T], their weighted sum instead. Only that
    row of the output projection is read and gets a gradient: a scalar head inside the vocabulary
    (the reward model's, align/reward.py). A tensor-parallel model's sequence-split hidden states
    and vocab-split weight are handled as in linear_cross_entropy: each rank its positions, the
    weight gathered, the positions' values gathered (or the weighted sums added up) over the ranks."""
    if not isinstance(hidden, DTensor):
        logits = (hidden @ weight[token]).float()
        return logits if token_weights is None else (logits * token_weights).sum()
    mesh = hidden.device_mesh
    seq = hidden.shape[1]
    shard = seq // mesh.size()
    start = mesh.get_local_rank() * shard
    # With DTensor hidden states the weight is one too (vocab-split on the same mesh, as above).
    local_weight = cast(DTensor, weight).redistribute(placements=[Replicate()]).to_local(grad_placements=[Partial()])
    local_weights = None if token_weights is None else token_weights[:, start : start + shard]
    local = token_logits(hidden.to_local(), local_weight, token, local_weights)
    return DTensor.from_local(local, mesh, [Shard(1)] if token_weights is None else [Partial()]).full_tensor()


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, ignore_index, reduction, chunk_size, token_weights):
        with torch.autocast(hidden.device.type, enabled=False):
            loss, grad_hidden, grad_weight, _ = _chunked(
                hidden, weight, targets, ignore_index, reduction, chunk_size, ctx.needs_input_grad[:2],
                token_weights=token_weights,
            )
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.mark_non_differentiable(targets)
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        grad_hidden, grad_weight = ctx.saved_tensors
        # The loss is usually the root of the graph (grad_loss == 1): on a CPU, where reading
        # it costs nothing, skip a pass over the weight's gradient (on a GPU the pass is cheaper
        # than the synchronisation).
        if grad_loss.device.type != "cpu" or grad_loss.item() != 1.0:
            if grad_hidden is not None:
                grad_hidden = grad_hidden * grad_loss.to(grad_hidden.dtype)
            if grad_weight is not None:
                grad_weight = grad_weight * grad_loss.to(grad_weight.dtype)
        return grad_hidden, grad_weight, None, None, None, None, None


def _chunked(
    hidden, weight, targets, ignore_index, reduction, chunk_size, needs_grad: tuple[bool, bool], count_hits=False,
    token_weights=None,
):
    """Loss (fp32 scalar; [tokens] with reduction "none"), d loss / d hidden and d loss / d weight
    (each None unless needed), and the counted targets that are their row's argmax (fp32 scalar;
    None unless count_hits)."""
    grads = any(needs_grad)
    tokens, vocab = hidden.shape[0], weight.shape[0]
    device, compute_dtype = hidden.device, hidden.dtype
    valid = targets != ignore_index
    safe_targets = torch.where(valid, targets, 0).unsqueeze(1)
    if reduction == "mean":
        # F.cross_entropy's mean: 0/0 = nan when nothing is counted.
        count = valid.sum(dtype=torch.float32)
        row_scale = valid.to(torch.float32) / count  # d loss / d (per-token loss), 0 where ignored
    else:
        count = None
        row_scale = valid.to(torch.float32)
        if token_weights is not None:
            row_scale = row_scale * token_weights
    row_scale = row_scale.unsqueeze(1)

    chunk = min(chunk_size, tokens)
    # The softmax and the gradient's elementwise passes run on blocks of rows: on a CPU, blocks
    # that fit in the core caches so the passes after the first hit them (~1.4x faster for a
    # 128K vocabulary); elsewhere the whole chunk at once.
    block = max(1, _CPU_BLOCK_BYTES // (4 * vocab)) if device.type == "cpu" else chunk
    block = min(block, chunk)
    upcast = compute_dtype != torch.float32
    # Reused across chunks, allocated once: the logits (then their gradient) in the compute
    # dtype, and fp32 blocks of log-probabilities (then probabilities) and of upcast logits.
    logits_buf = torch.empty(chunk, vocab, dtype=compute_dtype, device=device)
    logp_buf = torch.empty(block, vocab, dtype=torch.float32, device=device)
    logits32_buf = torch.empty(block, vocab, dtype=torch.float32, device=device) if upcast else None
    minus_one = torch.full((block, 1), -1.0, dtype=torch.float32, device=device)
    target_logp = torch.empty(tokens, 1, dtype=torch.float32, device=device)
    grad_hidden = torch.empty_like(hidden) if needs_grad[0] else None
    grad_weight = torch.empty_like(weight) if needs_grad[1] else None
    hits = torch.zeros((), dtype=torch.float32, device=device) if count_hits else None

    weight_t = weight.t()
    for start in range(0, tokens, chunk):
        end = min(start + chunk, tokens)
        h = hidden[start:end]
        logits = logits_buf[: end - start]
        torch.mm(h, weight_t, out=logits)
        if hits is not None:  # before the loop below overwrites the logits with their gradient
            hits += ((logits.argmax(-1) == targets[start:end]) & valid[start:end]).sum(dtype=torch.float32)
        for row in range(start, end, block):
            stop = min(row + block, end)
            n = stop - row
            z = logits[row - start : stop - start]
            if logits32_buf is not None:  # upcast
                z32 = logits32_buf[:n]
                z32.copy_(z)
            else:
                z32 = z
            logp = logp_buf[:n]
            torch._log_softmax(z32, -1, False, out=logp)
            t = safe_targets[row:stop]
            torch.gather(logp, 1, t, out=target_logp[row:stop])
            if not grads:
                continue
            # d loss / d logits = (softmax - one_hot(target)) * row_scale in fp32, rounded once
            # to the compute dtype into the logits' buffer, no longer needed.
            probs = logp.exp_()
            probs.scatter_add_(1, t, minus_one[:n])
            probs.mul_(row_scale[row:stop])
            z.copy_(probs)
        if grad_hidden is not None:
            torch.mm(logits, weight, out=grad_hidden[start:end])
        if grad_weight is not None:
            if start == 0:
                torch.mm(logits.t(), h, out=grad_weight)
            else:
                torch.addmm(grad_weight, logits.t(), h, out=grad_weight)
    if reduction == "none":
        return -(target_logp.squeeze(1) * valid), grad_hidden, grad_weight, hits  # 0 where not counted
    scale = valid if token_weights is None else row_scale.squeeze(1)
    total = -(target_logp.squeeze(1) * scale).sum()
    loss = total / count if reduction == "mean" else total
    return loss, grad_hidden, grad_weight, hits


# Bytes of fp32 per elementwise block on a CPU: about a core's L2.
_CPU_BLOCK_BYTES = 2 * 2**20


class LinearCrossEntropyLoss(nn.Module):
    """Module form of `linear_cross_entropy`, for losses passed around as modules."""

    def __init__(self, ignore_index: int = IGNORE_INDEX, reduction: str = "mean", chunk_size: int | None = None):
        super().__init__()
        self.ignore_index, self.reduction, self.chunk_size = ignore_index, reduction, chunk_size

    def forward(self, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return linear_cross_entropy(
            hidden, weight, targets, ignore_index=self.ignore_index, reduction=self.reduction,
            chunk_size=self.chunk_size,
        )
