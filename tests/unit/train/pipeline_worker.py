"""One rank of a pipeline-parallel equivalence check, run by parallel_launch.launch.

argv: STORE_FILE SCHEDULE ("1f1b" or "interleaved") [DP]; RANK and WORLD_SIZE from the environment.
The world is a [dp, pp] mesh (pp = WORLD_SIZE / DP). Each rank holds one stage (two for
"interleaved"), FSDP2-sharded over its dp group when DP > 1, runs one step of the schedule over
microbatches of its dp slice of the batch, and checks the loss and its stages' gradients against
the unsharded model on the whole batch.
"""
import os
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F
from parallel_worker import MICRO  # noqa: E402  (run as a script next to it)
from torch.distributed.fsdp import MixedPrecisionPolicy
from torch.distributed.tensor import DTensor

from llamaops.platform.config.parallel import ParallelLayout
from llamaops.platform.model.transformer import Transformer
from llamaops.platform.train.mesh import build_mesh
from llamaops.platform.train.parallelize import apply_fsdp
from llamaops.platform.train.pipeline import build_stages, pipeline_schedule, rank_stage_ids

BATCH, SEQ, MICROBATCHES = 8, 16, 4


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


def main() -> None:
    store_file, schedule_name = sys.argv[1], sys.argv[2]
    dp = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    torch.set_num_threads(1)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group("gloo", init_method=f"file://{store_file}", rank=rank, world_size=world)
    try:
        interleaved = schedule_name == "interleaved"
        layout = ParallelLayout(
            dp=dp, pp=world // dp, pp_microbatches=MICROBATCHES,
            pp_schedule="interleaved_1f1b" if interleaved else "1f1b", pp_stages_per_rank=2 if interleaved else 1,
        )
        mesh = build_mesh(layout)
        dp_rank = mesh["dp"].get_local_rank()
        n_stages = layout.pp * layout.pp_stages_per_rank
        cfg = MICRO.model_copy(update={"n_layers": 2 * n_stages})
        whole = Transformer(cfg)
        whole.init_weights(seed=0)
        indices = rank_stage_ids(layout, mesh["pp"].get_local_rank())
        policy = MixedPrecisionPolicy(param_dtype=torch.float32, reduce_dtype=torch.float32)
        shard = (lambda module: apply_fsdp(module, mesh["dp"], policy)) if dp > 1 else None
        stages, modules = build_stages(whole, mesh, layout, shard)
        schedule = pipeline_schedule(stages, layout, layout.pp_microbatches, cross_entropy)
        generator = torch.Generator().manual_seed(1)
        tokens = torch.randint(0, cfg.vocab_size, (BATCH, SEQ), generator=generator)
        targets = torch.randint(0, cfg.vocab_size, (BATCH, SEQ), generator=generator)
        losses: list[torch.Tensor] = []
        has_first, has_last = 0 in indices, n_stages - 1 in indices
        rows = slice(dp_rank * BATCH // dp, (dp_rank + 1) * BATCH // dp)
        args = (tokens[rows],) if has_first else ()
        kwargs = {"target": targets[rows], "losses": losses} if has_last else {}
        schedule.step(*args, **kwargs)

        want = whole(tokens, targets=targets)
        want.backward()
        if has_last:
            got = torch.stack(losses).mean()
            if dp > 1:
                dist.all_reduce(got, group=mesh["dp"].get_group())
                got /= dp
            torch.testing.assert_close(got, want.detach(), rtol=1e-4, atol=1e-5)
        reference = dict(whole.named_parameters())
        for module in modules:
            for name, p in module.named_parameters():
                grad = p.grad.full_tensor() if isinstance(p.grad, DTensor) else p.grad
                torch.testing.assert_close(grad, reference[name].grad, rtol=1e-4, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
