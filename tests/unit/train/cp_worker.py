"""One rank of a context-parallel equivalence check, run as a script by parallel_launch.launch.

argv: STORE_FILE SCENARIO...; RANK and WORLD_SIZE come from the environment. A scenario is a
parallel_worker.parse name ("dp2cp2", "cp2tp2-full", ...) plus an optional "docs" part (packed
documents whose boundaries cross the cp chunk boundaries). Each rank parallelizes a copy of the
micro model, runs `cp_forward_loss` on its dp slice of the batch and checks the loss and every
gradient against the unsharded model on the whole batch, at 1e-5 relative in fp32. Two deliberately
broken variants (keys' order or document mask wrong) must move the key gradients far outside that
tolerance, so a wrong mask or chunk order cannot pass.
"""
import contextlib
import copy
from unittest import mock

import torch
from parallel_worker import MICRO, full, parse, run_scenarios  # noqa: E402  (run as a script next to it)

from llamaops.platform.model.loss import IGNORE_INDEX
from llamaops.platform.model.transformer import Transformer
from llamaops.platform.train import context_parallel
from llamaops.platform.train.context_parallel import cp_forward_loss
from llamaops.platform.train.mesh import build_mesh
from llamaops.platform.train.parallelize import parallelize

BATCH, SEQ = 4, 32


def packed_documents(generator: torch.Generator) -> torch.Tensor:
    """[BATCH, SEQ] document ids, 2 to 4 documents a row at random cuts (they cross chunk ends)."""
    rows = []
    for _ in range(BATCH):
        cuts = torch.randperm(SEQ - 1, generator=generator)[: int(torch.randint(1, 4, (1,), generator=generator))] + 1
        starts = torch.zeros(SEQ, dtype=torch.long)
        starts[cuts] = 1
        rows.append(starts.cumsum(0))
    return torch.stack(rows)


def assert_close(name: str, got: torch.Tensor, want: torch.Tensor, bf16: bool) -> None:
    if bf16:
        error = float((got.float() - want).norm() / want.norm().clamp_min(1e-12))
        assert error < 3e-2, f"{name}: relative error {error:.3g} in bf16"
    else:
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7, msg=lambda m: f"{name}: {m}")


def check(name: str) -> None:
    layout, checkpointing, dtype = parse(name)
    with_docs = "docs" in name.split("-")
    bf16 = dtype == torch.bfloat16
    reference = Transformer(MICRO)
    reference.init_weights(seed=0)
    with torch.no_grad():  # sharper attention than at init, so which keys a query sees shows in the loss
        for block in reference.layers.values():
            block.attention.wq.weight.mul_(8)
            block.attention.wk.weight.mul_(8)
    mesh = build_mesh(layout)
    compiled = "compile" in name.split("-")
    sharded = parallelize(
        copy.deepcopy(reference), mesh, layout, param_dtype=dtype, checkpointing=checkpointing, compile_blocks=compiled
    )
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, MICRO.vocab_size, (BATCH, SEQ), generator=generator)
    targets = torch.randint(0, MICRO.vocab_size, (BATCH, SEQ), generator=generator)
    targets[0, :5] = IGNORE_INDEX  # unequal counts per row, so per dp rank
    targets[3, 7] = IGNORE_INDEX
    document_ids = packed_documents(generator) if with_docs else None
    rows = BATCH // layout.dp
    dp_rank = mesh["dp"].get_local_rank()
    mine = slice(dp_rank * rows, (dp_rank + 1) * rows)
    my_docs = None if document_ids is None else document_ids[mine]

    loss = cp_forward_loss(sharded, tokens[mine], targets[mine], my_docs, mesh)
    loss.backward()
    want = reference(tokens, targets=targets, document_ids=document_ids)
    want.backward()
    assert_close(f"{name} loss", loss.detach(), want.detach(), bf16)
    got_grads = {n: full(p.grad) for n, p in sharded.named_parameters()}
    assert got_grads.keys() == dict(reference.named_parameters()).keys()
    for n, p in reference.named_parameters():
        assert_close(f"{name} grad {n}", got_grads[n].float(), p.grad, bf16)
    if not bf16 and layout.cp > 1:
        check_broken_variants_differ(name, sharded, tokens[mine], targets[mine], my_docs, mesh, reference)
    if "steps" in name.split("-"):
        check_optimizer_steps(name, sharded, reference, (tokens, targets, document_ids), mine, mesh)


def check_optimizer_steps(name, sharded, reference, batch, mine, mesh, steps: int = 3) -> None:
    """What the training loop does with it: AdamW steps with gradient clipping (the norm over the
    dp x cp shards) keep the sharded model on the unsharded one's losses and weights."""
    tokens, targets, document_ids = batch
    my_docs = None if document_ids is None else document_ids[mine]
    optimizers = [torch.optim.AdamW(m.parameters(), lr=1e-2) for m in (sharded, reference)]
    for step in range(steps):
        for optimizer in optimizers:
            optimizer.zero_grad()
        loss = cp_forward_loss(sharded, tokens[mine], targets[mine], my_docs, mesh)
        loss.backward()
        want = reference(tokens, targets=targets, document_ids=document_ids)
        want.backward()
        assert_close(f"{name} step {step} loss", loss.detach(), want.detach(), False)
        norm = torch.nn.utils.clip_grad_norm_(sharded.parameters(), 0.5)
        want_norm = torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.5)
        assert_close(f"{name} step {step} grad norm", full(norm), want_norm, False)
        for optimizer in optimizers:
            optimizer.step()
    # Adam divides by the gradient's own magnitude, so where a gradient is ~0 rounding noise moves
    # the update by a share of lr: compare the weights to 1% of one step (lr 1e-2).
    weights = {n: full(p.detach()) for n, p in sharded.named_parameters()}
    for n, p in reference.named_parameters():
        torch.testing.assert_close(weights[n], p.detach(), rtol=1e-4, atol=1e-4, msg=lambda m, where=f"{name} {n}": f"{where}: {m}")


def check_broken_variants_differ(name, model, tokens, targets, document_ids, mesh, reference) -> None:
    """A wrong chunk order or a wrong mask moves the key gradients far outside the tolerance above
    (the loss itself moves by ~1e-5 relative only: random targets barely depend on attention)."""
    # keys assumed in global order while the all-gather delivers them in rank order
    wrong_order = mock.patch.object(context_parallel, "gathered_token_index", lambda seq, cp: torch.arange(seq))
    broken = [("keys in global order", wrong_order, document_ids)]
    if document_ids is not None:
        broken.append(("no document mask", contextlib.nullcontext(), None))
    want = reference.layers["0"].attention.wk.weight.grad
    for what, patch, docs in broken:
        model.zero_grad()
        with patch:
            cp_forward_loss(model, tokens, targets, docs, mesh).backward()
        got = full(model.layers["0"].attention.wk.weight.grad)
        error = float((got - want).norm() / want.norm())
        print(f"{name}: {what}: relative error of layers.0 wk gradient {error:.3g}")
        assert error > 0.1, f"{name}: {what} still gives the reference wk gradient (relative error {error:.3g})"


if __name__ == "__main__":
    run_scenarios(check)
