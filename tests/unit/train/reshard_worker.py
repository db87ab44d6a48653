"""One rank of the resharding check, run by test_checkpointing through parallel_launch.

argv: STORE_FILE PHASE ROOT EXPECTED. Phase "write" (2 ranks, FSDP over 2): one AdamW step,
checkpoint, one more step; rank 0 saves that step's loss and the weights after it to EXPECTED.
Phase "resume" (4 ranks, FSDP 2 x TP 2) or "resume-cp" (2 ranks, CP 2): fresh weights, restore
the checkpoint, take the same second step; its loss and weights must match EXPECTED.
"""
import os
import sys

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

from llamaops.platform.config.parallel import ParallelLayout
from llamaops.platform.model.transformer import Transformer
from llamaops.platform.train.checkpointing import Progress, restore_checkpoint, save_checkpoint
from llamaops.platform.train.context_parallel import cp_forward_loss
from llamaops.platform.train.mesh import build_mesh
from llamaops.platform.train.parallelize import parallelize

sys.path.insert(0, os.path.dirname(__file__))
from parallel_worker import BATCH, MICRO, SEQ  # noqa: E402


def step(model, optimizer, layout: ParallelLayout, batch: int) -> float:
    generator = torch.Generator().manual_seed(batch)
    tokens = torch.randint(0, MICRO.vocab_size, (BATCH, SEQ + 1), generator=generator)
    rows = BATCH // layout.dp
    dp_rank = dist.get_rank() // (layout.tp * layout.cp)
    mine = slice(dp_rank * rows, (dp_rank + 1) * rows)
    if layout.cp > 1:
        loss = cp_forward_loss(model, tokens[mine, :-1], tokens[mine, 1:], None, build_mesh(layout))
    else:
        loss = model(tokens[mine, :-1], targets=tokens[mine, 1:])
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    mean = loss.detach().clone()
    dist.all_reduce(mean)
    return float(mean) / dist.get_world_size()


def sharded_model(layout: ParallelLayout, seed: int):
    model = Transformer(MICRO)
    model.init_weights(seed=seed)
    parallelize(model, build_mesh(layout), layout, param_dtype=torch.float32)
    return model, torch.optim.AdamW(model.parameters(), lr=1e-2)


def full_weights(model) -> dict[str, torch.Tensor]:
    return {n: p.full_tensor() if isinstance(p, DTensor) else p.detach() for n, p in model.named_parameters()}


def main() -> None:
    store_file, phase, root, expected = sys.argv[1:5]
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store_file}",
                            rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]))
    try:
        if phase == "write":
            layout = ParallelLayout(dp=2)
            model, optimizer = sharded_model(layout, seed=0)
            step(model, optimizer, layout, batch=0)
            save_checkpoint(root, [model], [optimizer], Progress(step=1, cursor=123))
            loss = step(model, optimizer, layout, batch=1)
            weights = full_weights(model)
            if dist.get_rank() == 0:
                torch.save({"loss": loss, "weights": weights}, expected)
        else:
            layout = ParallelLayout(dp=2, tp=2) if phase == "resume" else ParallelLayout(cp=2)
            model, optimizer = sharded_model(layout, seed=1)
            progress = restore_checkpoint(root, 1, [model], [optimizer])
            assert (progress.step, progress.cursor) == (1, 123), progress
            loss = step(model, optimizer, layout, batch=1)
            want = torch.load(expected, weights_only=True)
            assert abs(loss - want["loss"]) < 1e-5, (loss, want["loss"])
            for name, weight in full_weights(model).items():
                torch.testing.assert_close(weight, want["weights"][name], rtol=1e-4, atol=1e-5, msg=name)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
