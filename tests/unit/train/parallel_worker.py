"""One rank of a parallel-equivalence check, run as a script by parallel_launch.launch.

argv: STORE_FILE SCENARIO...; RANK and WORLD_SIZE come from the environment. For each scenario
the rank builds the same micro model twice, parallelizes one copy with the scenario's layout, and
checks that its loss, logits and gradients match the unsharded copy's on the full batch. An
AssertionError makes the process exit non-zero with the mismatch on stderr.
"""
import copy
import os
import sys

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

from llamaops.platform.config.model import ModelConfig
from llamaops.platform.config.parallel import ParallelLayout
from llamaops.platform.model.loss import IGNORE_INDEX
from llamaops.platform.model.transformer import Transformer
from llamaops.platform.train.mesh import build_mesh
from llamaops.platform.train.parallelize import parallelize

MICRO = ModelConfig(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_hidden_dim=64, vocab_size=512, max_seq_len=64)
BATCH, SEQ = 4, 16


def parse(name: str) -> tuple[ParallelLayout, str, torch.dtype]:
    """"dp2tp2-selective-bf16" -> (layout, checkpointing, param dtype); a "compile" part is read by
    `check` (torch.compile per block)."""
    parts = name.split("-")
    dims = {"dp": 1, "tp": 1}
    spec = parts[0]
    while spec:
        dims[spec[:2]] = int(spec[2]) if len(spec) > 2 else 1
        spec = spec[3:]
    checkpointing = next((p for p in parts[1:] if p in ("full", "selective")), "none")
    dtype = torch.bfloat16 if "bf16" in parts else torch.float32
    return ParallelLayout(**dims), checkpointing, dtype


def full(t: torch.Tensor) -> torch.Tensor:
    return t.full_tensor() if isinstance(t, DTensor) else t


def close(name: str, got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype, fused: bool = False) -> None:
    if dtype == torch.float32:
        # Inductor fuses and reorders fp32 reductions, so compiled blocks get a looser bound.
        rtol, atol = (1e-3, 1e-4) if fused else (1e-4, 1e-5)
        torch.testing.assert_close(got, want, rtol=rtol, atol=atol, msg=lambda m: f"{name}: {m}")
    else:  # bf16 gathers: compare the relative error of the whole tensor
        error = float((got.float() - want).norm() / want.norm().clamp_min(1e-12))
        assert error < 3e-2, f"{name}: relative error {error:.3g} in bf16"


def check(name: str) -> None:
    layout, checkpointing, dtype = parse(name)
    compiled = "compile" in name.split("-")
    reference = Transformer(MICRO)
    reference.init_weights(seed=0)
    sharded = parallelize(
        copy.deepcopy(reference), build_mesh(layout), layout, param_dtype=dtype, checkpointing=checkpointing,
        compile_blocks=compiled,
    )
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, MICRO.vocab_size, (BATCH, SEQ), generator=generator)
    targets = torch.randint(0, MICRO.vocab_size, (BATCH, SEQ), generator=generator)
    if layout.dp == 1:  # ignored targets change per-rank means, so only where no rank splits the batch
        targets[:, :3] = IGNORE_INDEX
    document_ids = (torch.arange(SEQ) >= SEQ // 2).long().expand(BATCH, SEQ)
    rows = BATCH // layout.dp
    mesh_rank = dist.get_rank() // layout.tp  # dp is outermost, tp innermost
    mine = slice(mesh_rank * rows, (mesh_rank + 1) * rows)

    loss = sharded(tokens[mine], targets=targets[mine], document_ids=document_ids[mine])
    loss.backward()
    want = reference(tokens, targets=targets, document_ids=document_ids)
    want.backward()
    mean = loss.detach().clone()
    dist.all_reduce(mean)
    close(f"{name} loss", mean / dist.get_world_size(), want.detach(), dtype, compiled)
    got_grads = {n: full(p.grad) for n, p in sharded.named_parameters()}
    for n, p in reference.named_parameters():
        close(f"{name} grad {n}", got_grads[n].float(), p.grad, dtype, compiled)
    with torch.no_grad():
        close(f"{name} logits", sharded(tokens[mine]).float(), reference(tokens[mine]), dtype, compiled)


def run_scenarios(check_scenario) -> None:
    """argv STORE_FILE SCENARIO...: join the gloo group and run `check_scenario(name)` for each."""
    store_file, scenarios = sys.argv[1], sys.argv[2:]
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{store_file}",
        rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]),
    )
    try:
        for name in scenarios:
            check_scenario(name)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    run_scenarios(check)
