"""Data-parallel training steps with FSDP2 on CPU/gloo: llamaops vs Hugging Face transformers.

    .venv/bin/python benchmarks/fsdp_train_step_vs_transformers.py [--config tiny] [--steps 6] [--world 2]

The launcher starts `--world` gloo processes (one thread each) of this script. Every rank builds
both models with the same weights (train_step_vs_transformers.build_models) and shards each with
FSDP2 over all ranks in bf16 (fp32 on a CPU without bf16 instructions, said in one line; `--dtype`
forces either) with fp32 gradient reduction: llamaops through its own parallelize
step (platform/train/parallelize.py), transformers the way a plain FSDP2 loop does (fully_shard
per decoder layer, then the root, same MixedPrecisionPolicy). A step is zero_grad, forward with
the loss (llamaops: fused chunked loss; transformers: labels=), backward, AdamW step (llamaops:
its own, platform/train/optimizer.py, fused; transformers: torch's foreach kernel, or the same
fused kernel with --peer-fused-adamw, the ablation that isolates the rest of the step). The models
alternate step by step (the order flips every step) after warm-up; the median step gives tokens/s
of the whole group, and MFU is its model FLOP/s over the group's matmul peak in that dtype measured by
each rank in the same run. torchtitan (the peer the issue names first) cannot train on a CPU:
benchmarks/README.md, "torchtitan", and torchtitan_cpu_probe.py.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from train_step_vs_transformers import (  # noqa: E402
    CONFIGS,
    build_models,
    flops_per_token,
    matmul_peak,
    shifted_targets,
)


def rank_main(args) -> None:
    import torch
    import torch.distributed as dist
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    from llamaops.platform.config.parallel import ParallelLayout
    from llamaops.platform.train.mesh import build_mesh
    from llamaops.platform.train.optimizer import adamw
    from llamaops.platform.train.parallelize import parallelize

    torch.set_num_threads(1)
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group("gloo", init_method=f"file://{args.store}", rank=rank, world_size=world)
    cfg, batch, seq = CONFIGS[args.config]
    ours, theirs = build_models(cfg, seed=0)
    layout = ParallelLayout(dp=world)
    mesh = build_mesh(layout)
    parallelize(ours, mesh, layout, param_dtype=dtype, reduce_dtype=torch.float32)
    policy = MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32)
    for layer in theirs.model.layers:
        fully_shard(layer, mesh=mesh["dp"], mp_policy=policy)
    fully_shard(theirs, mesh=mesh["dp"], mp_policy=policy)
    betas, weight_decay = (0.9, 0.95), 0.1
    peer_kernel = {"fused": True} if args.peer_fused_adamw else {"foreach": True}
    optimizers = {
        "llamaops": adamw(ours, lr=1e-4, betas=betas, weight_decay=weight_decay),
        "transformers": torch.optim.AdamW(theirs.parameters(), lr=1e-4, betas=betas, weight_decay=weight_decay,
                                          **peer_kernel),
    }
    generator = torch.Generator().manual_seed(rank)
    tokens = torch.randint(0, cfg.vocab_size, (batch, seq), generator=generator)
    targets = shifted_targets(tokens)
    losses = {
        "llamaops": lambda: ours(tokens, targets=targets),
        "transformers": lambda: theirs(input_ids=tokens, labels=tokens, use_cache=False).loss,
    }

    def step(name: str) -> float:
        optimizers[name].zero_grad(set_to_none=True)
        loss = losses[name]()
        loss.backward()
        optimizers[name].step()
        return float(loss)

    times = {name: [] for name in losses}
    first_losses = {}
    order = list(losses)
    for i in range(args.warmup + args.steps):
        for name in order if i % 2 == 0 else order[::-1]:
            dist.barrier()
            start = time.perf_counter()
            loss = step(name)
            elapsed = time.perf_counter() - start
            first_losses.setdefault(name, loss)
            if i >= args.warmup:
                times[name].append(elapsed)
        if rank == 0:
            print(f"step {i + 1}: " + "  ".join(f"{n} {times[n][-1] if times[n] else 0:.3f}s" for n in order),
                  file=sys.stderr)
    peak = matmul_peak(dtype, n=1024, seconds=1.0)
    if rank == 0:
        tokens_per_step = world * batch * seq
        result = {"config": args.config, "world": world, "batch_per_rank": batch, "seq": seq, "dtype": args.dtype,
                  "peer_adamw": "fused" if args.peer_fused_adamw else "foreach",
                  "load_average_1min": os.getloadavg()[0],
                  "first_losses": first_losses, "matmul_peak_flops_per_rank": peak}
        for name in order:
            median = statistics.median(times[name])
            tps = tokens_per_step / median
            result[name] = {"median_step_s": median, "tokens_per_second": tps,
                            "mfu": tps * flops_per_token(cfg, seq) / (peak * world)}
        result["speedup_llamaops_over_transformers"] = (
            result["llamaops"]["tokens_per_second"] / result["transformers"]["tokens_per_second"])
        # Each step's two runs are back to back, so their ratio sees the same background load.
        result["median_paired_speedup"] = statistics.median(
            theirs / ours for ours, theirs in zip(times["llamaops"], times["transformers"]))
        print(json.dumps(result, indent=2))
    dist.destroy_process_group()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="tiny", choices=sorted(CONFIGS))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--world", type=int, default=2)
    parser.add_argument("--peer-fused-adamw", action="store_true",
                        help="ablation: give the transformers loop llamaops's fused AdamW kernel too "
                             "(by default it gets foreach, the fastest kernel a plain loop asks for)")
    parser.add_argument("--dtype", choices=["auto", "bf16", "fp32"], default="auto",
                        help="auto (default): bf16 where the CPU has bf16 instructions, else fp32")
    parser.add_argument("--store")
    args = parser.parse_args()
    if args.dtype == "auto":
        from llamaops.platform.model.precision import cpu_has_bf16, no_bf16_note

        args.dtype = "bf16" if cpu_has_bf16() else "fp32"
        if args.dtype == "fp32":
            print(f"{no_bf16_note()} (--dtype bf16 forces it)", file=sys.stderr)
    if "RANK" in os.environ:
        rank_main(args)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "WORLD_SIZE": str(args.world), "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
        command = [sys.executable, "-W", "ignore", __file__, "--config", args.config, "--steps", str(args.steps),
                   "--warmup", str(args.warmup), "--dtype", args.dtype, "--store", f"{tmp}/store"] + ["--peer-fused-adamw"] * args.peer_fused_adamw
        procs = [subprocess.Popen(command, env={**env, "RANK": str(r)}) for r in range(args.world)]
        return max(p.wait() for p in procs)


if __name__ == "__main__":
    sys.exit(main())
