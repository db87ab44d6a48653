"""The parallelize step's single-process parts; the multi-process equivalence checks are in
tests/integration/train/test_distributed_equivalence.py."""
import pytest
import torch

from llamaops.platform.config.parallel import ParallelLayout
from llamaops.platform.model.transformer import Transformer
from llamaops.platform.train.mesh import mesh_shape
from llamaops.platform.train.parallelize import UnsupportedLayout, apply_checkpointing, check_layout, parallelize

from .parallel_worker import MICRO, parse


def test_scenario_names_parse_into_layouts():
    layout, checkpointing, dtype = parse("dp2tp2-selective-bf16")
    assert (layout.dp, layout.tp, checkpointing, dtype) == (2, 2, "selective", torch.bfloat16)
    assert mesh_shape(ParallelLayout(tp=8, cp=2, pp=4, dp=3)) == (3, 4, 2, 8)  # dp outermost, tp innermost


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        (ParallelLayout(pp=2), "parallelize does not build pipeline stages"),
        (ParallelLayout(tp=4), "tp=4 does not divide n_kv_heads=2"),
    ],
)
def test_layouts_that_cannot_apply_are_refused_with_one_line(layout, message):
    with pytest.raises(UnsupportedLayout, match=message):
        check_layout(Transformer(MICRO.model_copy(update={"vocab_size": 64})), layout)


def test_activation_checkpointing_keeps_names_and_gradients():
    torch.manual_seed(0)
    plain = Transformer(MICRO)
    plain.init_weights(seed=0)
    wrapped = Transformer(MICRO)
    wrapped.load_state_dict(plain.state_dict())
    for block in wrapped.layers.values():
        apply_checkpointing(block, "selective")
    assert list(wrapped.state_dict()) == list(plain.state_dict())
    tokens = torch.randint(0, MICRO.vocab_size, (2, 8))
    for model in (plain, wrapped):
        model(tokens, targets=tokens.roll(1, 1)).backward()
    for (name, p), q in zip(plain.named_parameters(), wrapped.parameters()):
        torch.testing.assert_close(q.grad, p.grad, msg=name)
    with pytest.raises(ValueError, match="none, full or selective"):
        apply_checkpointing(wrapped.layers["0"], "everything")


def test_compiled_blocks_under_tensor_parallelism_are_refused_with_one_line():
    # TP + compiled blocks gave wrong tok_embeddings gradients on 2 gloo ranks: refused, not run.
    model = Transformer(MICRO.model_copy(update={"vocab_size": 64}))
    with pytest.raises(UnsupportedLayout, match="^compile with tp=2 gives wrong embedding gradients"):
        parallelize(model, None, ParallelLayout(tp=2), compile_blocks=True)
    with pytest.raises(UnsupportedLayout, match="^compile with tp=2 gives wrong embedding gradients"):
        parallelize(model, None, ParallelLayout(tp=2, compile=True))  # the layout's own flag


def test_selective_policy_keeps_reduce_scattered_outputs_not_partial_sums():
    # Under TP a row-parallel matmul (contraction dim sharded) gives whole-sequence partial sums;
    # the policy recomputes it and keeps the reduce-scattered result instead (a fake group: no traffic).
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Replicate, Shard
    from torch.utils.checkpoint import CheckpointPolicy

    from llamaops.platform.train.parallelize import _save_matmuls
    from llamaops.platform.train.plan import fake_process_group

    mm, scatter = torch.ops.aten.mm.default, torch.ops._c10d_functional.reduce_scatter_tensor.default
    with fake_process_group(2):
        mesh = init_device_mesh("cpu", (2,))
        sharded = DTensor.from_local(torch.ones(4, 2), mesh, [Shard(1)])
        whole = DTensor.from_local(torch.ones(4, 4), mesh, [Replicate()])
        assert _save_matmuls(None, mm, sharded, whole) == CheckpointPolicy.PREFER_RECOMPUTE  # wo, w2 under TP
        assert _save_matmuls(None, mm, whole, whole) == CheckpointPolicy.MUST_SAVE  # wq, w1, ... under TP
        assert _save_matmuls(None, mm, torch.ones(4, 4), torch.ones(4, 4)) == CheckpointPolicy.MUST_SAVE  # no TP
        assert _save_matmuls(None, scatter, torch.ones(4, 4)) == CheckpointPolicy.MUST_SAVE
        assert _save_matmuls(None, torch.ops.aten.mul.Tensor, whole, whole) == CheckpointPolicy.PREFER_RECOMPUTE
