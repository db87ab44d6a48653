"""The training engine on one accelerator: the tiny preset's model pretrained, then DPO-tuned from
the published model, through train_worker in a one-rank process group (NCCL on a GPU, gloo on a
CPU), FSDP2 with bf16 compute. The data are random token windows and dialog-like pairs: the
figures are throughput, MFU, memory and that the losses move, not quality.

    python benchmarks/gpu_stages.py [--device cuda] [--pretrain-steps 30] [--dpo-steps 10]

Prints per stage: steps, first and last loss, median tokens/s and MFU (against --peak-tflops,
the H100/H200 dense bf16 peak by default), peak accelerator memory, seconds. Exits non-zero if a
stage's loss does not fall.
"""
import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist
from memory_rehearsal import example_set, token_shards  # noqa: I001 (a benchmark beside this one)

from llamaops.platform.config import load_preset
from llamaops.platform.config.parallel import ParallelLayout
from llamaops.platform.store import staged_output
from llamaops.platform.train.checkpointing import publish_checkpoint_model
from llamaops.platform.train.loop import TrainingJob, train_worker
from llamaops.platform.train.preference_step import DPOObjective
from llamaops.platform.train.schedule import StepPlan


def _run(job: TrainingJob, device: torch.device) -> dict:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    history = train_worker(job, rank=0, world=1, device=device).history
    steady = history[1:] or history  # the first step compiles kernels and warms the allocator
    return {
        "steps": len(history),
        "first_loss": round(history[0]["loss"], 4),
        "last_loss": round(history[-1]["loss"], 4),
        "tokens_per_second": round(statistics.median(e["tokens_per_second"] for e in steady)),
        "mfu": round(statistics.median(e["mfu"] for e in steady), 4),
        "peak_memory_gib": round(max(e["memory_bytes"] for e in history) / 2**30, 2),
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--pretrain-steps", type=int, default=30)
    parser.add_argument("--dpo-steps", type=int, default=10)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--sequences", type=int, default=16, help="rows per pretraining step; DPO: pairs x 2")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of one accelerator")
    args = parser.parse_args()
    device = torch.device(args.device)
    work = Path(tempfile.mkdtemp(prefix="gpu-stages-"))
    store = dist.FileStore(str(work / "store"), 1)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", store=store, rank=0, world_size=1)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    model = load_preset("tiny").model
    base = TrainingJob(model=model, plan=[], data_uri="", checkpoint_root="", checkpoint_steps=[], keep_checkpoints=1,
                       layout=ParallelLayout(param_dtype="bf16"), threads_per_worker=torch.get_num_threads(),
                       peak_flops=args.peak_tflops * 1e12, weight_decay=0.0)
    tokens = token_shards((work / "tokens").as_uri(), model.vocab_size,
                          args.sequences * (args.seq_len + 1) * (args.pretrain_steps + 1))
    pairs = example_set((work / "pairs").as_uri(), model.vocab_size, 4 * args.sequences, args.dpo_steps,
                        args.sequences, pairs=True)
    figures = {}
    pretrain = replace(base, data_uri=tokens, checkpoint_root=(work / "pretrain-checkpoints").as_uri(),
                       plan=[StepPlan(args.seq_len, args.sequences, 3e-3)] * args.pretrain_steps,
                       checkpoint_steps=[args.pretrain_steps])
    figures["pretrain"] = _run(pretrain, device)
    published = (work / "pretrain").as_uri()
    with staged_output(published) as out:
        publish_checkpoint_model(pretrain.checkpoint_root, [args.pretrain_steps], out)
    dpo = replace(base, data_uri=pairs, batches="examples", init_model_uri=published,
                  checkpoint_root=(work / "dpo-checkpoints").as_uri(), checkpoint_steps=[args.dpo_steps],
                  plan=[StepPlan(args.seq_len, args.sequences, 1e-4)] * args.dpo_steps,
                  objective=DPOObjective(beta=0.5, nll_coefficient=0.2, seq_len=args.seq_len))
    figures["dpo"] = _run(dpo, device)
    dist.destroy_process_group()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"gpu_stages: tiny model ({model.dim} dim, {model.n_layers} layers), bf16 compute, one rank on {name}")
    for stage, row in figures.items():
        print(f"{stage:9s} " + "  ".join(f"{key} {value}" for key, value in row.items()), flush=True)
    if any(row["last_loss"] >= row["first_loss"] for row in figures.values()):
        raise SystemExit("a stage's loss did not fall")


if __name__ == "__main__":
    main()
