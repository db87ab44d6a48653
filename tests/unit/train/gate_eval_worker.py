"""One rank of the check that the long-context gate's figures, measured on the sharded model
(train/gate_checks.py over rank_eval.py), equal the one-process ones.

argv: STORE_FILE SHARDS_DIR LAYOUT_JSON...; RANK and WORLD_SIZE from the environment. For each
layout every rank builds the same micro model and places it as the layout says, then:
- the short-context loss over the gate's validation windows must equal the one-process
  `validation_perplexity` (what the driver computed before) within 1e-5;
- the teacher-forced sums of a few (prompt, reply) rows must equal those of the one-process
  logits: summed loss, counted targets and argmax hits;
- a training step right after (as after the step-0 baseline) gives the one-process loss.
A bf16 layout (param_dtype) is held to bf16's rounding of the loss and the same counted targets.
"""
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

from llamaops.platform.config.model import ModelConfig
from llamaops.platform.config.parallel import ParallelLayout
from llamaops.platform.eval.perplexity import open_validation, validation_perplexity
from llamaops.platform.model.loss import IGNORE_INDEX
from llamaops.platform.model.transformer import Transformer
from llamaops.platform.train.batches import Batch
from llamaops.platform.train.gate_checks import (
    GateChecks,
    needle_found_sums,
    sharded_short_context_loss,
    teacher_forced_row,
)
from llamaops.platform.train.rank_model import build_rank_model

MODEL = ModelConfig(dim=32, n_layers=4, n_heads=4, n_kv_heads=2, ffn_hidden_dim=64, vocab_size=512, max_seq_len=64)
GATE = GateChecks(steps=(0,), seq_len=16, windows=7, batch_size=2)  # odd windows: DP ranks differ
ROW_LEN = 32


def model() -> Transformer:
    torch.manual_seed(0)
    whole = Transformer(MODEL)
    whole.init_weights(seed=0)
    return whole


def cases() -> list[tuple[list[int], list[int]]]:
    """Three prompts of different lengths with a reply each; one reply is the model's own greedy
    continuation (all hits), so the hit count is tested at both ends."""
    generator = torch.Generator().manual_seed(1)
    rows = [torch.randint(0, MODEL.vocab_size, (n,), generator=generator).tolist() for n in (9, 20, 14)]
    reference = model()
    prompt, greedy = rows[2][:10], []
    with torch.no_grad():
        for _ in range(3):
            greedy.append(int(reference(torch.tensor([prompt + greedy]))[0, -1].argmax()))
    return [(rows[0][:6], rows[0][6:]), (rows[1][:15], rows[1][15:]), (prompt, greedy)]


def reference_sums(whole: Transformer, prompt: list[int], reply: list[int]) -> torch.Tensor:
    row = teacher_forced_row(prompt, reply, ROW_LEN)
    with torch.no_grad():
        logits = whole(row.inputs, document_ids=row.document_ids)[0]
    counted = row.targets[0] != IGNORE_INDEX
    loss = F.cross_entropy(logits[counted], row.targets[0][counted], reduction="sum")
    hits = (logits[counted].argmax(-1) == row.targets[0][counted]).sum()
    return torch.stack((loss, counted.sum().float(), hits.float()))


def training_batch(rows: slice) -> Batch:
    generator = torch.Generator().manual_seed(2)
    tokens = torch.randint(0, MODEL.vocab_size, (4, ROW_LEN + 1), generator=generator)[rows]
    return Batch(tokens[:, :-1], tokens[:, 1:], torch.zeros(len(tokens), ROW_LEN, dtype=torch.long))


def main() -> None:
    store_file, shards_dir, *layouts = sys.argv[1:]
    torch.set_num_threads(1)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group("gloo", init_method=f"file://{store_file}", rank=rank, world_size=world)
    try:
        stream = open_validation(Path(shards_dir), GATE.seq_len)
        whole = model()
        want_loss = validation_perplexity(whole, stream, GATE.seq_len, GATE.windows, GATE.batch_size).mean_nll
        the_cases = cases()
        want_sums = torch.stack([reference_sums(whole, prompt, reply) for prompt, reply in the_cases])
        assert want_sums[2, 2] == 3 and want_sums[0, 2] < want_sums[0, 1], want_sums  # a pass and a fail
        whole_batch = training_batch(slice(None))
        want_step = float(whole(whole_batch.inputs, document_ids=whole_batch.document_ids, targets=whole_batch.targets))
        for layout_json in layouts:
            layout = ParallelLayout.model_validate_json(layout_json)
            placed = build_rank_model(model(), layout, torch.device("cpu"))
            got_loss = sharded_short_context_loss(placed, stream, GATE, torch.device("cpu"))
            got_sums = needle_found_sums(placed, the_cases, ROW_LEN, torch.device("cpu")).float()
            if layout.param_dtype == "bf16":  # bf16 weights: the loss within its rounding, hits may differ
                assert abs(got_loss - want_loss) < 2e-2 * want_loss, (layout.describe(), got_loss, want_loss)
                assert torch.equal(got_sums[:, 1], want_sums[:, 1]), (got_sums, want_sums)
            else:
                assert abs(got_loss - want_loss) < 1e-5, (layout.describe(), got_loss, want_loss)
                torch.testing.assert_close(got_sums, want_sums, rtol=1e-5, atol=1e-5, msg=layout.describe())
            rows = slice(2 * rank, 2 * rank + 2) if layout.dp == 2 else slice(None)  # each DP rank its half
            got_step = placed.mean_loss(placed.forward_backward(training_batch(rows), torch.device("cpu")))
            tolerance = 2e-2 * want_step if layout.param_dtype == "bf16" else 1e-5
            assert abs(got_step - want_step) < tolerance, (layout.describe(), got_step, want_step)
            print(f"{layout.describe()}: loss {got_loss:.6f} (one process {want_loss:.6f})", flush=True)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
