"""Context parallelism on CPU: CP 2 (two gloo processes) vs CP 1 (the unsharded model) on the same
batch, same weights, same run. Prints the training step time (forward + backward), tokens/s and,
per rank, the bytes autograd saves for backward (activations) and the peak RSS.

    .venv/bin/python benchmarks/context_parallel_cpu.py [--seq 2048] [--steps 3] [--rounds 3] [--no-documents] [--vocab N]

"CP 2, dense mask" is the attention CP used before the prefix kernel, reimplemented here only: the
keys and values all-gathered in rank order and every local query attending to all T of them under
a dense [B or 1, 1, T / cp, T] bool mask (ContextShard.mask). Its ratio to "CP 2" (the prefix
kernel, what training runs) is printed last.

The model is the tiny preset's (dim 128, 4 layers, the real 128K vocabulary unless --vocab) with
max_seq_len raised to --seq. CP 1 runs with 1 and with 2 threads: CP 2 uses two processes of one thread each,
so "CP 1, 2 threads" is the same-cores comparison. On a shared 2-core machine the timings move
with other users' load; the activation bytes do not.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist


def batch(seq: int, vocab: int, documents: bool):
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, vocab, (1, seq), generator=generator)
    targets = torch.randint(0, vocab, (1, seq), generator=generator)
    # Packed documents of 300 tokens: boundaries fall inside the cp chunks.
    document_ids = (torch.arange(seq) // 300).view(1, seq) if documents else None
    return tokens, targets, document_ids


def saved_bytes(step, weight_shape: tuple[int, int]) -> int:
    """Bytes of the distinct tensors autograd keeps for backward while `step()` builds the graph:
    activations. Not counted: parameters (and views of them), and the fused loss's output-weight
    gradient (`weight_shape`), which it computes in forward and which is the same on every rank."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor):
        base = t if t._base is None else t._base
        if not (base.is_leaf and base.requires_grad) and tuple(t.shape) != weight_shape:
            storage = t.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = step()
    loss.backward()
    return sum(storages.values())


def dense_mask_attention(model, mesh):
    """Install the old CP attention (see the docstring); returns the forward to call instead of
    cp_forward_loss's."""
    import torch.distributed._functional_collectives as funcol

    from llamaops.platform.train.context_parallel import shard_context

    group, cp, rank = mesh["cp"].get_group(), mesh["cp"].size(), mesh["cp"].get_local_rank()

    def rank_order_gather_dense_mask(queries, keys, values, mask):
        both = torch.stack((keys, values)).movedim(3, 0).contiguous()
        gathered = funcol.all_gather_single_autograd(both, gather_dim=0, group=group)
        gathered = funcol.wait_tensor(gathered) if isinstance(gathered, funcol.AsyncCollectiveTensor) else gathered
        keys, values = gathered.movedim(0, 3).unbind(0)
        return torch.nn.functional.scaled_dot_product_attention(queries, keys, values, attn_mask=mask, enable_gqa=True)

    for block in model.layers.values():
        block.attention.attention_kernel = rank_order_gather_dense_mask

    def loss(tokens, targets, document_ids):
        shard = shard_context(tokens, targets, document_ids, cp, rank)
        # one rank's mean (the benchmark compares time and memory; cp_forward_loss adds the all-reduce)
        return model(shard.tokens, positions=shard.positions, attention_mask=shard.mask, targets=shard.targets)

    return loss


def run_rank(args) -> dict:
    from llamaops.platform.config import load_preset
    from llamaops.platform.config.parallel import ParallelLayout
    from llamaops.platform.model.transformer import Transformer
    from llamaops.platform.train.context_parallel import cp_forward_loss
    from llamaops.platform.train.mesh import build_mesh
    from llamaops.platform.train.metrics import peak_memory_bytes
    from llamaops.platform.train.parallelize import parallelize

    torch.set_num_threads(args.threads)
    cfg = load_preset("tiny").model
    cfg = cfg.model_copy(update={"max_seq_len": args.seq, "vocab_size": args.vocab or cfg.vocab_size})
    model = Transformer(cfg)
    model.init_weights(seed=0)
    tokens, targets, document_ids = batch(args.seq, cfg.vocab_size, not args.no_documents)
    if args.cp > 1:
        layout = ParallelLayout(cp=args.cp)
        mesh = build_mesh(layout)
        parallelize(model, mesh, layout, param_dtype=torch.float32)
        dense = dense_mask_attention(model, mesh) if args.attention == "dense" else None

        def step():
            if dense is not None:
                return dense(tokens, targets, document_ids)
            return cp_forward_loss(model, tokens, targets, document_ids, mesh)
    else:

        def step():
            return model(tokens, targets=targets, document_ids=document_ids)

    activations = saved_bytes(step, (cfg.vocab_size, cfg.dim))  # also the warm-up step
    model.zero_grad(set_to_none=True)
    times = []
    for _ in range(args.steps):
        if args.cp > 1:
            dist.barrier()
        start = time.perf_counter()
        step().backward()
        times.append(time.perf_counter() - start)
        model.zero_grad(set_to_none=True)
    return {"seconds": statistics.median(times), "activations": activations, "rss": peak_memory_bytes(torch.device("cpu"))}


def launch(args, cp: int, threads: int, attention: str = "prefix") -> list[dict]:
    """Run this script's worker mode on `cp` processes; every rank's result."""
    store = Path(tempfile.mkdtemp(prefix="cp-bench-")) / "store"
    env = {**os.environ, "WORLD_SIZE": str(cp), "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": str(threads)}
    argv = [sys.executable, __file__, "--worker", str(store), "--cp", str(cp), "--threads", str(threads),
            "--seq", str(args.seq), "--steps", str(args.steps), "--attention", attention, "--vocab", str(args.vocab)]
    argv += ["--no-documents"] if args.no_documents else []
    procs = [subprocess.Popen(argv, env={**env, "RANK": str(r)}, stdout=subprocess.PIPE, text=True) for r in range(cp)]
    outputs = [proc.communicate()[0] for proc in procs]
    if any(proc.returncode for proc in procs):
        raise SystemExit(f"a CP {cp} rank failed")
    return [json.loads(out.strip().splitlines()[-1]) for out in outputs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-documents", action="store_true", help="plain causal rows instead of packed documents")
    parser.add_argument("--vocab", type=int, default=0,
                        help="vocabulary size (default: the preset's 128,256, whose loss dominates the step at this width)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--cp", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--attention", default="prefix", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        if args.cp > 1:
            rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
            dist.init_process_group("gloo", init_method=f"file://{args.worker}", rank=rank, world_size=world)
        print(json.dumps(run_rank(args)))
        if args.cp > 1:
            dist.destroy_process_group()
        return
    rows = [("CP 1, 1 thread", 1, 1, "prefix"), ("CP 1, 2 threads", 1, 2, "prefix"),
            ("CP 2, 1 thread/rank", 2, 1, "prefix"), ("CP 2, dense mask", 2, 1, "dense")]
    print(f"tiny preset width (dim 128, 4 layers, vocab {args.vocab or 128_256:,}), fp32, batch 1 x {args.seq}, "
          f"{'plain causal' if args.no_documents else 'packed documents of 300 tokens'}; step time: median of "
          f"{args.steps} steps, best of {args.rounds} rounds (the runs alternate, so load hits each alike)")
    runs: dict[str, list[list[dict]]] = {name: [] for name, *_ in rows}
    for round_ in range(args.rounds):
        for name, cp, threads, attention in rows if round_ % 2 == 0 else reversed(rows):
            runs[name].append(launch(args, cp, threads, attention))
    print(f"{'run':<22}{'step s':>8}{'tokens/s':>10}{'saved activations/rank':>24}{'peak RSS/rank':>15}  rounds' step s")
    results = {}
    for name, *_ in rows:
        per_round = [max(r["seconds"] for r in ranks) for ranks in runs[name]]
        seconds = min(per_round)
        activations = max(r["activations"] for ranks in runs[name] for r in ranks)
        rss = max(r["rss"] for ranks in runs[name] for r in ranks)
        results[name] = (args.seq / seconds, activations, rss)
        print(f"{name:<22}{seconds:8.3f}{args.seq / seconds:10.0f}{activations / 2**20:20.1f} MiB"
              f"{rss / 2**20:11.0f} MiB  {' '.join(f'{t:.2f}' for t in per_round)}")
    cp2_speed, cp2_act, cp2_rss = results["CP 2, 1 thread/rank"]
    print(f"CP 2 / CP 1 tokens/s: {cp2_speed / results['CP 1, 1 thread'][0]:.2f}x (vs 1 thread), "
          f"{cp2_speed / results['CP 1, 2 threads'][0]:.2f}x (vs 2 threads, same cores)")
    print(f"CP 2 / CP 1 saved activations per rank: {cp2_act / results['CP 1, 1 thread'][1]:.2f}")
    dense_speed, dense_act, dense_rss = results["CP 2, dense mask"]
    print(f"CP 2 prefix kernel / dense mask: step time {dense_speed / cp2_speed:.2f}x, saved activations per rank "
          f"{cp2_act / dense_act:.2f}x, peak RSS per rank {cp2_rss / dense_rss:.2f}x")


if __name__ == "__main__":
    main()
