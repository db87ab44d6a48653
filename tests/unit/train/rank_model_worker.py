"""One rank of a check that a step with pieces holding no counted target trains on the others.

argv: STORE_FILE LAYOUT_JSON; RANK and WORLD_SIZE from the environment. Every rank builds the same
micro model and batch, in which pipeline microbatch 0 (rows 0-1) and context-parallel rank 0's
chunks (positions 0-7 and 24-31 of every row) have no counted target. RankModel.forward_backward
under the layout must give the loss and gradients of the one-process model on the whole batch:
finite, where a per-piece mean would be 0 / 0.
"""
import os
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F
from parallel_worker import MICRO  # noqa: E402  (run as a script next to it)
from torch.distributed.tensor import DTensor

from llamaops.platform.config.parallel import ParallelLayout
from llamaops.platform.model.loss import IGNORE_INDEX
from llamaops.platform.model.transformer import Transformer
from llamaops.platform.train.batches import Batch
from llamaops.platform.train.rank_model import build_rank_model

ROWS, SEQ = 8, 32


def batch() -> Batch:
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, MICRO.vocab_size, (ROWS, SEQ + 1), generator=generator)
    targets = tokens[:, 1:].clone()
    targets[:2] = IGNORE_INDEX
    targets[:, :8] = IGNORE_INDEX
    targets[:, 24:] = IGNORE_INDEX
    return Batch(inputs=tokens[:, :-1], targets=targets, document_ids=torch.zeros(ROWS, SEQ, dtype=torch.long))


def main() -> None:
    store_file, layout_json = sys.argv[1:3]
    torch.set_num_threads(1)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group("gloo", init_method=f"file://{store_file}", rank=rank, world_size=world)
    try:
        layout = ParallelLayout.model_validate_json(layout_json)
        assert layout.dp == 1, "every rank takes the whole batch"
        torch.manual_seed(0)
        reference = Transformer(MICRO)
        reference.init_weights(seed=0)
        model = Transformer(MICRO)
        model.load_state_dict(reference.state_dict())
        data = batch()
        logits = reference(data.inputs, document_ids=data.document_ids)
        want = F.cross_entropy(logits.flatten(0, 1), data.targets.flatten(), ignore_index=IGNORE_INDEX)
        want.backward()

        placed = build_rank_model(model, layout, torch.device("cpu"))
        got = placed.mean_loss(placed.forward_backward(data, torch.device("cpu")))
        assert abs(got - float(want)) < 1e-5, (got, float(want))
        expected = dict(reference.named_parameters())
        for part in placed.parts:
            for name, param in part.named_parameters():
                grad = param.grad.full_tensor() if isinstance(param.grad, DTensor) else param.grad
                assert torch.isfinite(grad).all(), name
                torch.testing.assert_close(grad, expected[name].grad, rtol=1e-4, atol=1e-6, msg=name)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
