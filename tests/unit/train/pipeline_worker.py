"""One rank of a pipeline-parallel equivalence check, run by parallel_launch.launch.

argv: STORE_FILE SCHEDULE ("1f1b" or "interleaved"); RANK and WORLD_SIZE from the environment.
Each rank holds one stage (two for "interleaved"), runs one step of the schedule over
microbatches, and checks the loss and its stages' gradients against the unsharded model.
"""
import copy
import os
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleInterleaved1F1B

from llamaops.platform.model.transformer import Transformer
from llamaops.platform.train.pipeline import split_stage

from parallel_worker import MICRO  # noqa: E402  (run as a script next to it)

BATCH, SEQ, MICROBATCHES = 4, 16, 4


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


def main() -> None:
    store_file, schedule_name = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group("gloo", init_method=f"file://{store_file}", rank=rank, world_size=world)
    try:
        per_rank = 2 if schedule_name == "interleaved" else 1
        n_stages = world * per_rank
        cfg = MICRO.model_copy(update={"n_layers": 2 * n_stages})
        whole = Transformer(cfg)
        whole.init_weights(seed=0)
        indices = [rank + world * v for v in range(per_rank)]  # looped placement: rank r holds r, r+world
        modules = [split_stage(copy.deepcopy(whole), n_stages, i) for i in indices]
        stages = [PipelineStage(m, i, n_stages, torch.device("cpu")) for m, i in zip(modules, indices)]
        if schedule_name == "interleaved":
            schedule = ScheduleInterleaved1F1B(stages, n_microbatches=MICROBATCHES, loss_fn=cross_entropy)
        else:
            schedule = Schedule1F1B(stages[0], n_microbatches=MICROBATCHES, loss_fn=cross_entropy)
        generator = torch.Generator().manual_seed(1)
        tokens = torch.randint(0, cfg.vocab_size, (BATCH, SEQ), generator=generator)
        targets = torch.randint(0, cfg.vocab_size, (BATCH, SEQ), generator=generator)
        losses: list[torch.Tensor] = []
        has_first, has_last = 0 in indices, n_stages - 1 in indices
        args = (tokens,) if has_first else ()
        kwargs = {"target": targets, "losses": losses} if has_last else {}
        schedule.step(*args, **kwargs)

        want = whole(tokens, targets=targets)
        want.backward()
        if has_last:
            got = torch.stack(losses).mean()
            torch.testing.assert_close(got, want.detach(), rtol=1e-4, atol=1e-5)
        reference = dict(whole.named_parameters())
        for module in modules:
            for name, p in module.named_parameters():
                torch.testing.assert_close(p.grad, reference[name].grad, rtol=1e-4, atol=1e-5, msg=lambda m: f"{name}: {m}")
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
