"""Per-rank memory of the training engine through the post-training chain, on CPU ranks (gloo).

    python benchmarks/memory_rehearsal.py --world 4 --json

A model whose fp32 weights plus AdamW state (`unsharded_state_bytes`, 12 bytes a parameter) no
rank could hold next to its share of the work runs pretraining (fresh weights, built sharded),
then SFT, then DPO (its reference log-probs measured on the input model), then the reward model,
each stage on `--world` ranks starting from the previous stage's published model, which each rank
reads in part. Every rank is a process of its own; its peak resident memory (ru_maxrss) is what
it reports. For comparison the DPO stage also runs on one rank: the whole model in one process,
as the in-process post-training loops held it.

The data are random (token windows, dialog-like examples with a prompt that is not learned): the
figures are about memory, not learning. Prints one line per stage, or with --json one JSON object:
{"unsharded_state_bytes", "parameters", "world", "stages": {name: {"peak_rss_bytes_per_rank",
"seconds"}}, "whole_model_dpo_peak_rss_bytes", "peak_below_half_of_unsharded"}.
"""
import argparse
import json
import os
import pickle
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from llamaops.platform.config.model import ModelConfig
from llamaops.platform.config.parallel import ParallelLayout
from llamaops.platform.data.shards import write_meta, write_split
from llamaops.platform.model.transformer import Transformer
from llamaops.platform.store import staged_output
from llamaops.platform.train.checkpointing import publish_checkpoint_model
from llamaops.platform.train.example_set import TRAIN, write_example_set, write_step_rows
from llamaops.platform.train.loop import TrainingJob
from llamaops.platform.train.preference_step import DPOObjective, RewardObjective
from llamaops.platform.train.schedule import StepPlan

SEQ_LEN = 64


def _model(args) -> ModelConfig:
    return ModelConfig(dim=args.dim, n_layers=args.layers, n_heads=args.dim // 64, n_kv_heads=args.dim // 256,
                       ffn_hidden_dim=4 * args.dim, vocab_size=args.vocab, max_seq_len=1024, rope_scaling=None)


def _parameters(cfg: ModelConfig) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in Transformer(cfg).parameters())


def token_shards(uri: str, vocab: int, tokens: int) -> str:
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, vocab, int(rng.integers(20, 200))).tolist() for _ in range(tokens // 100 + 3)]
    with staged_output(uri) as out:
        counts = {"train": write_split(out, "train", docs), "validation": write_split(out, "validation", docs[:3])}
        write_meta(out, "random", counts)
    return uri


def example_set(uri: str, vocab: int, examples: int, steps: int, rows: int, pairs: bool) -> str:
    rng = np.random.default_rng(1)
    written = []
    for _ in range(examples):
        prompt, reply = int(rng.integers(4, 24)), int(rng.integers(4, 36))
        written.append((rng.integers(0, vocab, prompt + reply).tolist(), [False] * prompt + [True] * reply))
    with staged_output(uri) as directory:
        write_example_set(directory, TRAIN, written)
        if pairs:
            step_rows = [[2 * p + side for p in rng.permutation(examples // 2)[: rows // 2] for side in (0, 1)]
                         for _ in range(steps)]
        else:
            step_rows = [rng.permutation(examples)[:rows].tolist() for _ in range(steps)]
        write_step_rows(directory, step_rows)
    return uri


def _run_ranks(job: TrainingJob, world: int, work: Path, name: str) -> list[int]:
    """Run `job` on `world` rank processes; each one's peak RSS in bytes."""
    job_file = work / f"{name}.job"
    job_file.write_bytes(pickle.dumps(job))
    store = Path(tempfile.mkdtemp(dir=work)) / "store"
    # glibc's malloc raises its mmap threshold after large frees, then keeps FSDP2's freed gather
    # buffers (16 MB weights here) in its heap: ~1 GiB of RSS no tensor holds. A fixed threshold
    # returns them, so the peak is what the rank's tensors need.
    env = {**os.environ, "WORLD_SIZE": str(world), "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo",
           "MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}
    procs = [subprocess.Popen([sys.executable, __file__, "--rank-worker", str(store), str(job_file),
                               str(work / f"{name}-rank{rank}.json")], env={**env, "RANK": str(rank)})
             for rank in range(world)]
    while any(proc.poll() is None for proc in procs):
        if any(proc.poll() for proc in procs):  # one failed: the others would wait for it forever
            for proc in procs:
                proc.kill()
            break
        time.sleep(0.5)
    if any(proc.wait() for proc in procs):
        raise SystemExit(f"stage {name}: a rank failed (exit codes {[p.returncode for p in procs]})")
    return [json.loads((work / f"{name}-rank{rank}.json").read_text())["peak_rss_bytes"] for rank in range(world)]


def _rank_worker(store: str, job_file: str, report: str) -> None:
    import torch.distributed as dist

    from llamaops.platform.train.loop import train_worker

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if world > 1:
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    train_worker(pickle.loads(Path(job_file).read_bytes()), rank, world)
    if world > 1:
        dist.destroy_process_group()
    Path(report).write_text(json.dumps({"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--world", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--steps", type=int, default=2, help="optimizer steps per stage")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a fresh temporary directory")
    parser.add_argument("--rank-worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rank_worker:
        return _rank_worker(*args.rank_worker)

    work = args.workdir or Path(tempfile.mkdtemp(prefix="memory-rehearsal-"))
    work.mkdir(parents=True, exist_ok=True)
    cfg = _model(args)
    parameters = _parameters(cfg)
    rows = 2 * args.world  # two rows (one pair) per rank and step
    plan = [StepPlan(seq_len=SEQ_LEN, sequences=rows, lr=1e-4)] * args.steps
    base = TrainingJob(model=cfg, plan=plan, data_uri="", checkpoint_root="", checkpoint_steps=[args.steps],
                       keep_checkpoints=1, layout=ParallelLayout(dp=args.world), threads_per_worker=1,
                       peak_flops=1e12, weight_decay=0.0)
    tokens = token_shards((work / "tokens").as_uri(), args.vocab, rows * (SEQ_LEN + 1) * args.steps * 2)
    examples = example_set((work / "examples").as_uri(), args.vocab, 8 * rows, args.steps, rows, pairs=False)
    pairs = example_set((work / "pairs").as_uri(), args.vocab, 8 * rows, args.steps, rows, pairs=True)
    stages = [
        ("pretrain", dict(data_uri=tokens)),
        ("sft", dict(data_uri=examples, batches="examples")),
        ("dpo", dict(data_uri=pairs, batches="examples", objective=DPOObjective(0.1, 0.2, SEQ_LEN))),
        ("reward_model", dict(data_uri=pairs, batches="examples", objective=RewardObjective(args.vocab - 1))),
    ]
    figures: dict[str, dict] = {}
    model_uri = None
    for name, changes in stages:
        job = replace(base, checkpoint_root=(work / f"{name}-checkpoints").as_uri(), init_model_uri=model_uri, **changes)
        started = time.perf_counter()
        peaks = _run_ranks(job, args.world, work, name)
        published = (work / name).as_uri()
        with staged_output(published) as out:
            publish_checkpoint_model(job.checkpoint_root, [args.steps], out)
        shutil.rmtree(work / f"{name}-checkpoints")  # 12 bytes a parameter each: keep the disk
        figures[name] = {"peak_rss_bytes_per_rank": peaks, "seconds": round(time.perf_counter() - started, 1)}
        if name == "dpo":
            whole = replace(job, layout=ParallelLayout(), checkpoint_root=(work / "dpo-one-rank").as_uri())
            dpo_whole = _run_ranks(whole, 1, work, "dpo-one-rank")[0]
            shutil.rmtree(work / "dpo-one-rank")
        if not args.json:
            print(f"{name:13s} {figures[name]['seconds']:7.1f} s  peak RSS per rank (GiB):"
                  f" {[round(p / 2**30, 2) for p in peaks]}", flush=True)
        model_uri = published
    unsharded = 12 * parameters  # fp32 weights + AdamW's two fp32 moments
    largest = max(p for stage in figures.values() for p in stage["peak_rss_bytes_per_rank"])
    result = {
        "parameters": parameters,
        "unsharded_state_bytes": unsharded,
        "world": args.world,
        "stages": figures,
        "whole_model_dpo_peak_rss_bytes": dpo_whole,
        "largest_peak_rss_bytes": largest,
        "peak_below_half_of_unsharded": largest < unsharded / 2,
        "driver_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"parameters {parameters:,}; unsharded state {unsharded / 2**30:.2f} GiB; largest rank peak"
              f" {largest / 2**30:.2f} GiB ({largest / unsharded:.2f} of it); DPO on one rank"
              f" {dpo_whole / 2**30:.2f} GiB; driver {result['driver_peak_rss_bytes'] / 2**30:.2f} GiB")
    if not result["peak_below_half_of_unsharded"]:
        raise SystemExit("a rank's peak reached half the unsharded state")


if __name__ == "__main__":
    main()
