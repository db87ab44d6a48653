"""Causal attention of a chunk of queries over a longer run of keys that ends with the chunk's own.

Query i of a chunk of c queries sees keys [0, S - c + i] of S keys: a causal mask aligned to the
lower right. It is what a chunk of a long sequence needs when the keys before it come from
elsewhere (context parallelism), and it needs no [c, S] mask:

- on CPU, the earlier S - c keys unmasked and the chunk's own c keys under is_causal, each with
  torch's flash kernel (which returns the log-sum-exp of the scores), merged by log-sum-exp. The
  backward runs the same kernel's backward on each part with the MERGED output and log-sum-exp,
  which gives exactly the gradient of the merged attention (the ring-attention identity);
- elsewhere, SDPA with torch.nn.attention.bias.causal_lower_right, which CUDA's flash and
  memory-efficient kernels take without a mask. (On CPU, SDPA materializes that bias as a [c, S]
  mask for every call, which autograd then keeps per layer.)

With packed documents a query also sees only keys of its own document, which needs a mask over
[c, S]. `document_prefix_attention` builds it from the document ids as an additive bias for the
call and builds it again in backward, so between forward and backward only the ids are held (a
bias kept for backward would be c x S elements per layer and micro-batch in flight).
"""
import torch
import torch.nn.functional as F
from torch.nn.attention.bias import causal_lower_right

_cpu_flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
_cpu_flash_backward = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward


class _MergedPrefixAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, query, key, value, scale):
        own = query.shape[2]
        earlier = key.shape[2] - own
        out, lse = _cpu_flash(query, key[:, :, earlier:], value[:, :, earlier:], 0.0, True, scale=scale)
        if earlier:
            out_earlier, lse_earlier = _cpu_flash(query, key[:, :, :earlier], value[:, :, :earlier], 0.0, False, scale=scale)
            merged = torch.logaddexp(lse, lse_earlier)
            out = (out.float() * (lse - merged).exp().unsqueeze(-1)
                   + out_earlier.float() * (lse_earlier - merged).exp().unsqueeze(-1)).to(query.dtype)
            lse = merged
        ctx.save_for_backward(query, key, value, out, lse)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx, grad_out):
        query, key, value, out, lse = ctx.saved_tensors
        earlier = key.shape[2] - query.shape[2]
        grad_out = grad_out.contiguous()
        parts = [(slice(earlier, None), True)] + ([(slice(0, earlier), False)] if earlier else [])
        grad_query = torch.zeros_like(query)
        grad_key, grad_value = torch.empty_like(key), torch.empty_like(value)
        for keys, causal in parts:
            dq, dk, dv = _cpu_flash_backward(
                grad_out, query, key[:, :, keys], value[:, :, keys], out, lse, 0.0, causal, scale=ctx.scale
            )
            grad_query += dq
            grad_key[:, :, keys], grad_value[:, :, keys] = dk, dv
        return grad_query, grad_key, grad_value, None


def document_bias(query_documents: torch.Tensor, key_documents: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, 1, c, S] additive bias (0 or -inf): causal aligned to the lower right, within a document."""
    chunk, keys = query_documents.shape[1], key_documents.shape[1]
    visible = query_documents.unsqueeze(-1) == key_documents.unsqueeze(-2)
    visible &= torch.ones(chunk, keys, dtype=torch.bool, device=visible.device).tril(keys - chunk)
    bias = torch.zeros(visible.shape, dtype=dtype, device=visible.device).masked_fill_(~visible, float("-inf"))
    return bias.unsqueeze(1)


class _DocumentPrefixAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, query, key, value, query_documents, key_documents, recompute):
        bias = document_bias(query_documents, key_documents, query.dtype)
        if not recompute:
            out, lse = _cpu_flash(query, key, value, 0.0, False, attn_mask=bias)
            ctx.save_for_backward(query, key, value, query_documents, key_documents, out, lse)
        else:  # no kernel that returns its log-sum-exp for every device: backward recomputes the forward
            out = F.scaled_dot_product_attention(query, key, value, attn_mask=bias, enable_gqa=True)
            ctx.save_for_backward(query, key, value, query_documents, key_documents)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        query, key, value, query_documents, key_documents, *out_lse = ctx.saved_tensors
        bias = document_bias(query_documents, key_documents, query.dtype)
        if out_lse:
            out, lse = out_lse
            grads = _cpu_flash_backward(grad_out.contiguous(), query, key, value, out, lse, 0.0, False, attn_mask=bias)
        else:
            with torch.enable_grad():
                inputs = [t.detach().requires_grad_() for t in (query, key, value)]
                out = F.scaled_dot_product_attention(*inputs, attn_mask=bias, enable_gqa=True)
                grads = torch.autograd.grad(out, inputs, grad_out)
        return *grads, None, None, None


def document_prefix_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    query_documents: torch.Tensor,
    key_documents: torch.Tensor,
    recompute: bool | None = None,
) -> torch.Tensor:
    """prefix_causal_attention within documents: query_documents [B, c] and key_documents [B, S]
    are the document ids of the queries and keys. recompute (default: off the CPU): SDPA, with its
    forward run again in backward, instead of CPU flash's backward from the saved log-sum-exp."""
    recompute = query.device.type != "cpu" if recompute is None else recompute
    return _DocumentPrefixAttention.apply(query, key, value, query_documents, key_documents, recompute)


def prefix_causal_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """query [B, H, c, D], key/value [B, H_kv, S, D] (S >= c; H a multiple of H_kv) -> [B, H, c, D]:
    query i attends to keys [0, S - c + i]."""
    if query.device.type == "cpu":
        return _MergedPrefixAttention.apply(query, key, value, query.shape[-1] ** -0.5)
    return lower_right_attention(query, key, value)


def lower_right_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """The same through SDPA's lower-right causal bias (no mask on CUDA's kernels)."""
    bias = causal_lower_right(query.shape[2], key.shape[2])
    return F.scaled_dot_product_attention(query, key, value, attn_mask=bias, enable_gqa=True)
