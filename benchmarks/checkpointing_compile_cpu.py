"""Activation checkpointing (none, full, selective) and torch.compile per block in the training
step, on CPU: tokens/s of each against none + eager on the same model and batch, same run.

    .venv/bin/python benchmarks/checkpointing_compile_cpu.py [--seq 256] [--batch 2] [--steps 3] [--rounds 3] [--warmup 3] [--threads 2]

The model is the tiny preset's (dim 128, 4 layers, the real 128K vocabulary). Each variant is the
loop's own placement (rank_model.build_rank_model with the layout's activation_checkpointing,
compile and param_dtype) in one gloo process, so FSDP2 wraps it as on a cluster, and an AdamW
step (the loop's). Variants run in turns, `--rounds` times, so the shared machine's load spreads
over all; a step's time is the median over every round. "first step" is the first step's seconds
(compile pays its compilation there); `--warmup` steps of each variant (the first included) are
not timed: the first few steps of any variant are slower (allocation, the optimizer's state). Activation memory is counted by `llamaops train plan`.
"""
import argparse
import statistics
import time

import torch
import torch.distributed as dist

VARIANTS = [  # (name, layout options); the first is the baseline
    ("none, eager", {}),
    ("full, eager", {"activation_checkpointing": "full"}),
    ("selective, eager", {"activation_checkpointing": "selective"}),
    ("none, compiled", {"compile": True}),
    ("full, compiled", {"activation_checkpointing": "full", "compile": True}),
    ("selective, compiled", {"activation_checkpointing": "selective", "compile": True}),
    ("none, eager, bf16 params", {"param_dtype": "bf16"}),
]


def build(options: dict, seq: int):
    from llamaops.platform.config import load_preset
    from llamaops.platform.config.parallel import ParallelLayout
    from llamaops.platform.model.transformer import Transformer
    from llamaops.platform.train.optimizer import adamw
    from llamaops.platform.train.rank_model import build_rank_model

    cfg = load_preset("tiny").model.model_copy(update={"max_seq_len": max(seq, 256)})
    model = Transformer(cfg)
    model.init_weights(seed=0)
    placed = build_rank_model(model, ParallelLayout(**options), torch.device("cpu"))
    return cfg, placed.parts[0], adamw(placed.parts[0], lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)


def step(model, optimizer, tokens, targets) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) of one training step."""
    start, cpu = time.perf_counter(), time.process_time()
    model(tokens, targets=targets).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from llamaops.platform.model.precision import cpu_has_bf16, no_bf16_note

    variants = VARIANTS
    if not cpu_has_bf16():
        print(f"{no_bf16_note()}: the bf16 variant is left out")
        variants = [(name, options) for name, options in VARIANTS if options.get("param_dtype") != "bf16"]
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    built = {name: build(options, args.seq) for name, options in variants}
    vocab = next(iter(built.values()))[0].vocab_size
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, vocab, (args.batch, args.seq), generator=generator)
    targets = torch.randint(0, vocab, (args.batch, args.seq), generator=generator)
    first = {name: step(model, optimizer, tokens, targets)[0] for name, (_, model, optimizer) in built.items()}
    for _, model, optimizer in built.values():
        for _ in range(args.warmup - 1):
            step(model, optimizer, tokens, targets)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in built}
    for _ in range(args.rounds):
        for name, (_, model, optimizer) in built.items():
            times[name] += [step(model, optimizer, tokens, targets) for _ in range(args.steps)]
    dist.destroy_process_group()
    tokens_per_step = args.batch * args.seq
    wall = {name: statistics.median(t[0] for t in times[name]) for name in built}
    cpu = {name: statistics.median(t[1] for t in times[name]) for name in built}
    base = VARIANTS[0][0]
    print(f"tiny width, seq {args.seq}, batch {args.batch}, {args.threads} threads, torch {torch.__version__};"
          f" median of {args.rounds} x {args.steps} steps after {args.warmup} warm-up steps")
    # CPU seconds are what the step costs this process; wall seconds also count other users' load.
    print(f"{'variant':<28}{'wall s':>8}{'tokens/s':>10}{'ratio':>7}{'cpu s':>8}{'tokens/cpu-s':>14}{'ratio':>7}"
          f"{'first step s':>14}")
    for name in built:
        print(f"{name:<28}{wall[name]:>8.3f}{tokens_per_step / wall[name]:>10.0f}{wall[base] / wall[name]:>6.2f}x"
              f"{cpu[name]:>8.3f}{tokens_per_step / cpu[name]:>14.0f}{cpu[base] / cpu[name]:>6.2f}x{first[name]:>14.1f}")
    print("ratio: the variant's tokens/s (or tokens per CPU second) over none, eager's")


if __name__ == "__main__":
    main()
