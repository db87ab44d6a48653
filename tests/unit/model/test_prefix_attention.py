"""Prefix attention (a chunk of queries over a longer run of keys ending with its own, causal to
the lower right, optionally within documents) equals SDPA under the dense mask, forward and
backward, and keeps no [chunk, keys] tensor for backward."""
import pytest
import torch
import torch.nn.functional as F

from llamaops.platform.model.prefix_attention import (
    document_prefix_attention,
    lower_right_attention,
    prefix_causal_attention,
)

BATCH, HEADS, KV_HEADS, CHUNK, HEAD_DIM = 2, 4, 2, 16, 8


def _inputs(keys: int, dtype: torch.dtype):
    generator = torch.Generator().manual_seed(keys)
    query = 3 * torch.randn(BATCH, HEADS, CHUNK, HEAD_DIM, generator=generator)  # sharp: masks matter
    key, value = (torch.randn(BATCH, KV_HEADS, keys, HEAD_DIM, generator=generator) for _ in range(2))
    cut = keys - CHUNK // 2  # row 0: a document starts inside the chunk; row 1: long before it
    documents = torch.tensor([[0] * cut + [1] * (keys - cut), [0] * 3 + [1] * (keys - 3)])
    grad = torch.randn(BATCH, HEADS, CHUNK, HEAD_DIM, generator=generator)
    return [t.to(dtype) for t in (query, key, value)], documents, grad.to(dtype)


def _run(attention, tensors, grad, saved: list | None = None):
    leaves = [t.clone().requires_grad_() for t in tensors]

    def pack(t):
        if saved is not None:
            saved.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = attention(*leaves)
    out.backward(grad)
    return [out.detach()] + [leaf.grad for leaf in leaves]


def _dense(mask):
    return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("keys", [CHUNK, 4 * CHUNK])
def test_prefix_attention_is_sdpa_under_the_lower_right_causal_mask(dtype, keys):
    tensors, documents, grad = _inputs(keys, dtype)
    causal = torch.ones(CHUNK, keys, dtype=torch.bool).tril(keys - CHUNK)
    same_document = documents[:, -CHUNK:].unsqueeze(-1) == documents.unsqueeze(-2)
    cases = [
        (prefix_causal_attention, causal),
        (lower_right_attention, causal),
        (lambda q, k, v: document_prefix_attention(q, k, v, documents[:, -CHUNK:], documents), causal & same_document.unsqueeze(1)),
        (lambda q, k, v: document_prefix_attention(q, k, v, documents[:, -CHUNK:], documents, recompute=True),
         causal & same_document.unsqueeze(1)),
    ]
    for attention, mask in cases:
        want = _run(_dense(mask), tensors, grad)
        for name, got, expected in zip(("out", "dq", "dk", "dv"), _run(attention, tensors, grad), want):
            if dtype == torch.float32:
                torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5, msg=lambda m, where=f"{attention} {name}": f"{where}: {m}")
            else:  # bf16 rounds the merged output before backward: compare as cp_worker does
                error = float((got.float() - expected.float()).norm() / expected.float().norm())
                assert error < 1e-2, f"{attention} {name}: relative error {error:.3g} in bf16"


def test_no_chunk_by_keys_tensor_is_kept_for_backward():
    keys = 4 * CHUNK
    tensors, documents, grad = _inputs(keys, torch.float32)
    for attention in (prefix_causal_attention,
                      lambda q, k, v: document_prefix_attention(q, k, v, documents[:, -CHUNK:], documents)):
        saved: list = []
        _run(attention, tensors, grad, saved)
        assert saved and not [shape for shape in saved if shape[-2:] == (CHUNK, keys)], saved
    saved = []  # what the dense mask costs: SDPA keeps a float copy of it
    _run(_dense(torch.ones(CHUNK, keys, dtype=torch.bool).tril(keys - CHUNK)), tensors, grad, saved)
    assert (CHUNK, keys) in [shape[-2:] for shape in saved]
