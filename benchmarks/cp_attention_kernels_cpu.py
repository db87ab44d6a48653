"""One CP rank's attention on CPU, kernel by kernel: the prefix kernels context parallelism uses now
vs the dense-mask attention it replaced, on the same queries and keys in the same run.

    .venv/bin/python benchmarks/cp_attention_kernels_cpu.py [--seq 8192] [--cp 2] [--heads 8] [--threads 1]

Rank 0 of `--cp` holds global chunks 0 and 2 cp - 1 (c = seq / (2 cp) queries each). Plain causal
rows, per chunk j over its key prefix [0, (j + 1) c):
- "prefix, log-sum-exp merge": what training runs on CPU (model/prefix_attention.py);
- "prefix, causal_lower_right SDPA": what it runs elsewhere (on CPU, SDPA materializes the bias);
- "dense mask over all keys": both chunks' queries over all seq keys under a [2c, seq] bool mask,
  the old path.
Packed documents (300 tokens), the same three ways: the document bias rebuilt in backward
(training's), SDPA under a [c, prefix] mask per chunk, and the dense [2c, seq] mask.
Prints forward + backward time (median of --repeats) and the bytes autograd keeps for backward
(distinct storages, inputs excluded), and each kernel's ratio to the dense one.
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from llamaops.platform.model.prefix_attention import (
    document_prefix_attention,
    lower_right_attention,
    prefix_causal_attention,
)


def measure(attention, leaves, grad, repeats: int) -> tuple[float, int]:
    inputs = {leaf.untyped_storage().data_ptr() for leaf in leaves}
    storages: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in inputs:
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        attention(*leaves).backward(grad)
    times = []
    for _ in range(repeats):
        for leaf in leaves:
            leaf.grad = None
        start = time.perf_counter()
        attention(*leaves).backward(grad)
        times.append(time.perf_counter() - start)
    return statistics.median(times), sum(storages.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq", type=int, default=8192)
    parser.add_argument("--cp", type=int, default=2)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--head-dim", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seq, cp = args.seq, args.cp
    chunk = seq // (2 * cp)
    chunks = (0, 2 * cp - 1)  # rank 0's
    generator = torch.Generator().manual_seed(0)
    query = torch.randn(1, args.heads, 2 * chunk, args.head_dim, generator=generator).requires_grad_()
    key, value = (torch.randn(1, args.kv_heads, seq, args.head_dim, generator=generator).requires_grad_() for _ in "kv")
    grad = torch.randn(1, args.heads, 2 * chunk, args.head_dim, generator=generator)
    documents = (torch.arange(seq) // 300).view(1, seq)
    local = torch.cat([torch.arange(j * chunk, (j + 1) * chunk) for j in chunks])
    causal = torch.arange(seq).view(1, -1) <= local.view(-1, 1)
    same_document = documents[:, local].unsqueeze(-1) == documents.unsqueeze(-2)

    def per_chunk(attend):
        def run(q, k, v):
            outs = []
            for i, j in enumerate(chunks):
                span = (j + 1) * chunk
                outs.append(attend(q[:, :, i * chunk : (i + 1) * chunk], k[:, :, :span], v[:, :, :span], j))
            return torch.cat(outs, dim=2)
        return run

    def chunk_mask(j, span):
        rows = documents[:, j * chunk : (j + 1) * chunk].unsqueeze(-1) == documents[:, :span].unsqueeze(-2)
        return (rows & torch.ones(chunk, span, dtype=torch.bool).tril(span - chunk)).unsqueeze(1)

    def dense(mask):
        return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)

    kernels = {
        "plain causal rows": [
            ("prefix, log-sum-exp merge", per_chunk(lambda q, k, v, j: prefix_causal_attention(q, k, v))),
            ("prefix, causal_lower_right SDPA", per_chunk(lambda q, k, v, j: lower_right_attention(q, k, v))),
            ("dense mask over all keys", dense(causal)),
        ],
        "packed documents of 300 tokens": [
            ("prefix, bias rebuilt in backward", per_chunk(lambda q, k, v, j: document_prefix_attention(
                q, k, v, documents[:, j * chunk : (j + 1) * chunk], documents[:, : k.shape[2]]))),
            ("prefix, SDPA under [c, prefix] mask", per_chunk(lambda q, k, v, j: F.scaled_dot_product_attention(
                q, k, v, attn_mask=chunk_mask(j, k.shape[2]), enable_gqa=True))),
            ("dense mask over all keys", dense((causal & same_document).unsqueeze(1))),
        ],
    }
    print(f"one CP rank's attention (rank 0 of cp {cp}), seq {seq}: 2 chunks of {chunk} queries, {args.heads} heads,"
          f" {args.kv_heads} kv heads, head_dim {args.head_dim}, fp32, {args.threads} thread(s); fwd+bwd median of"
          f" {args.repeats}")
    print(f"{'kernel':<40}{'fwd+bwd s':>10}{'kept for backward':>20}{'time / dense':>14}{'memory / dense':>16}")
    for rows, variants in kernels.items():
        print(rows)
        results = [(name, *measure(attention, [query, key, value], grad, args.repeats)) for name, attention in variants]
        _, dense_seconds, dense_bytes = results[-1]
        for name, seconds, kept in results:
            print(f"  {name:<38}{seconds:10.3f}{kept / 2**20:16.1f} MiB{seconds / dense_seconds:13.2f}x"
                  f"{kept / dense_bytes:15.2f}x")


if __name__ == "__main__":
    main()
