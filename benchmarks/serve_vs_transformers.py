"""Greedy decoding: llamaops' continuous-batching engine vs transformers' generate, same weights.

Batch 1: TTFT and decode tokens/s. Concurrency C (8, 32): C requests arrive at once; llamaops
batches them continuously (max_batch=C); the peer serves them as one static batch of C through
`generate` (left-padded, KV cache), which is its best case. Both run in this process (no HTTP
front; the engine is what the server drives). Prints ratios llamaops / transformers.

    .venv/bin/python benchmarks/serve_vs_transformers.py [--dim 512 --layers 8 --new-tokens 64]
"""
import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import torch

from llamaops.platform.config.model import ModelConfig
from llamaops.platform.model import Transformer
from llamaops.platform.model.hf import save_hf
from llamaops.platform.serve import Engine, SamplingParams


def _prompts(n: int, length: int, vocab: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(n)
    return torch.randint(0, vocab, (n, length), generator=g).tolist()


def _llamaops(model: Transformer, prompts, new_tokens: int) -> dict:
    engine = Engine(model, max_batch=len(prompts), token_budget=4096, max_seq_len=len(prompts[0]) + new_tokens + 1)
    params = SamplingParams(max_tokens=new_tokens)
    start = time.perf_counter()
    requests = [engine.submit(p, params) for p in prompts]
    engine.step()  # prefill of every prompt + the first token
    ttft = time.perf_counter() - start
    engine.run_until_idle()
    total = time.perf_counter() - start
    return {"ttft_s": ttft, "total_s": total, "tokens": [r.tokens for r in requests]}


def _transformers(hf, prompts, new_tokens: int) -> dict:
    ids = torch.tensor(prompts)
    kwargs = dict(do_sample=False, pad_token_id=0, attention_mask=torch.ones_like(ids))
    start = time.perf_counter()
    hf.generate(ids, max_new_tokens=1, min_new_tokens=1, **kwargs)
    ttft = time.perf_counter() - start
    start = time.perf_counter()
    out = hf.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **kwargs)
    total = time.perf_counter() - start
    return {"ttft_s": ttft, "total_s": total, "tokens": out[:, ids.shape[1] :].tolist()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--prompt-len", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from transformers import LlamaForCausalLM

    cfg = ModelConfig(
        dim=args.dim, n_layers=args.layers, n_heads=args.dim // 64, n_kv_heads=max(1, args.dim // 256),
        ffn_hidden_dim=int(args.dim * 3.5), vocab_size=args.vocab, max_seq_len=1024, rope_scaling=None,
    )
    model = Transformer(cfg)
    model.init_weights(seed=0)
    model.eval()
    with tempfile.TemporaryDirectory() as tmp:
        save_hf(model, Path(tmp) / "hf", dtype=torch.float32, tokenizer=False)
        hf = LlamaForCausalLM.from_pretrained(Path(tmp) / "hf", torch_dtype=torch.float32, attn_implementation="sdpa").eval()
    params = sum(p.numel() for p in model.parameters())
    print(f"model: {params / 1e6:.1f}M params, dim {args.dim}, {args.layers} layers; prompt {args.prompt_len}, "
          f"{args.new_tokens} new tokens, fp32, {args.threads} threads")
    results = []
    with torch.inference_mode():
        _llamaops(model, _prompts(1, 8, args.vocab), 4), _transformers(hf, _prompts(1, 8, args.vocab), 4)  # warm-up
        for c in args.concurrency:
            prompts = _prompts(c, args.prompt_len, args.vocab)
            ours, peer = _llamaops(model, prompts, args.new_tokens), _transformers(hf, prompts, args.new_tokens)
            same = sum(a == b for a, b in zip(ours["tokens"], peer["tokens"]))
            row = {"concurrency": c}
            for name, r in (("llamaops", ours), ("transformers", peer)):
                row[f"{name}_tokens_per_s"] = c * args.new_tokens / r["total_s"]
                row[f"{name}_ttft_s"] = r["ttft_s"]
            row["throughput_ratio"] = row["llamaops_tokens_per_s"] / row["transformers_tokens_per_s"]
            row["ttft_ratio"] = row["transformers_ttft_s"] / row["llamaops_ttft_s"]
            row["identical_outputs"] = f"{same}/{c}"
            results.append(row)
            print(f"C={c:>2}: llamaops {row['llamaops_tokens_per_s']:8.1f} tok/s TTFT {ours['ttft_s'] * 1000:7.1f} ms | "
                  f"transformers {row['transformers_tokens_per_s']:8.1f} tok/s TTFT {peer['ttft_s'] * 1000:7.1f} ms | "
                  f"throughput x{row['throughput_ratio']:.2f}, TTFT x{row['ttft_ratio']:.2f}, identical greedy {same}/{c}",
                  flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of the process (both engines): {peak:.0f} MiB")
    if args.out:
        args.out.write_text(json.dumps({"args": vars(args) | {"out": str(args.out)}, "results": results, "peak_rss_mib": peak}, indent=2))


if __name__ == "__main__":
    main()
