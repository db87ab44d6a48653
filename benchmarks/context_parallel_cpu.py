"""Context parallelism on CPU: CP 2 (two gloo processes) vs CP 1 (the unsharded model) on the same
batch, same weights, same run. Prints the training step time (forward + backward), tokens/s and,
per rank, the bytes autograd saves for backward (activations) and the peak RSS.

    .venv/bin/python benchmarks/context_parallel_cpu.py [--seq 2048] [--steps 3] [--rounds 3] [--no-documents]

The model is the tiny preset's (dim 128, 4 layers, the real 128K vocabulary) with max_seq_len
raised to --seq. CP 1 runs with 1 and with 2 threads: CP 2 uses two processes of one thread each,
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


def run_rank(args) -> dict:
    from llamaops.platform.config import load_preset
    from llamaops.platform.config.parallel import ParallelLayout
    from llamaops.platform.model.transformer import Transformer
    from llamaops.platform.train.context_parallel import cp_forward_loss
    from llamaops.platform.train.mesh import build_mesh
    from llamaops.platform.train.metrics import peak_memory_bytes
    from llamaops.platform.train.parallelize import parallelize

    torch.set_num_threads(args.threads)
    cfg = load_preset("tiny").model.model_copy(update={"max_seq_len": args.seq})
    model = Transformer(cfg)
    model.init_weights(seed=0)
    tokens, targets, document_ids = batch(args.seq, cfg.vocab_size, not args.no_documents)
    if args.cp > 1:
        layout = ParallelLayout(cp=args.cp)
        mesh = build_mesh(layout)
        parallelize(model, mesh, layout, param_dtype=torch.float32)

        def step():
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


def launch(args, cp: int, threads: int) -> list[dict]:
    """Run this script's worker mode on `cp` processes; every rank's result."""
    store = Path(tempfile.mkdtemp(prefix="cp-bench-")) / "store"
    env = {**os.environ, "WORLD_SIZE": str(cp), "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": str(threads)}
    argv = [sys.executable, __file__, "--worker", str(store), "--cp", str(cp), "--threads", str(threads),
            "--seq", str(args.seq), "--steps", str(args.steps)] + (["--no-documents"] if args.no_documents else [])
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
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--cp", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        if args.cp > 1:
            rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
            dist.init_process_group("gloo", init_method=f"file://{args.worker}", rank=rank, world_size=world)
        print(json.dumps(run_rank(args)))
        if args.cp > 1:
            dist.destroy_process_group()
        return
    rows = [("CP 1, 1 thread", 1, 1), ("CP 1, 2 threads", 1, 2), ("CP 2, 1 thread/rank", 2, 1)]
    print(f"tiny preset width (dim 128, 4 layers, vocab 128,256), fp32, batch 1 x {args.seq}, "
          f"{'plain causal' if args.no_documents else 'packed documents of 300 tokens'}; step time: median of "
          f"{args.steps} steps, best of {args.rounds} rounds (the runs alternate, so load hits each alike)")
    runs: dict[str, list[list[dict]]] = {name: [] for name, _, _ in rows}
    for round_ in range(args.rounds):
        for name, cp, threads in rows if round_ % 2 == 0 else reversed(rows):
            runs[name].append(launch(args, cp, threads))
    print(f"{'run':<22}{'step s':>8}{'tokens/s':>10}{'saved activations/rank':>24}{'peak RSS/rank':>15}  rounds' step s")
    results = {}
    for name, _, _ in rows:
        per_round = [max(r["seconds"] for r in ranks) for ranks in runs[name]]
        seconds = min(per_round)
        activations = max(r["activations"] for ranks in runs[name] for r in ranks)
        rss = max(r["rss"] for ranks in runs[name] for r in ranks)
        results[name] = (args.seq / seconds, activations)
        print(f"{name:<22}{seconds:8.3f}{args.seq / seconds:10.0f}{activations / 2**20:20.1f} MiB"
              f"{rss / 2**20:11.0f} MiB  {' '.join(f'{t:.2f}' for t in per_round)}")
    cp2_speed, cp2_act = results["CP 2, 1 thread/rank"]
    print(f"CP 2 / CP 1 tokens/s: {cp2_speed / results['CP 1, 1 thread'][0]:.2f}x (vs 1 thread), "
          f"{cp2_speed / results['CP 1, 2 threads'][0]:.2f}x (vs 2 threads, same cores)")
    print(f"CP 2 / CP 1 saved activations per rank: {cp2_act / results['CP 1, 1 thread'][1]:.2f}")


if __name__ == "__main__":
    main()
