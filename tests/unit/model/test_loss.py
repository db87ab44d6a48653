import pytest
import torch
import torch.nn.functional as F

from llamaops.platform.config import ModelConfig
from llamaops.platform.model import Transformer
from llamaops.platform.model.loss import IGNORE_INDEX, LinearCrossEntropyLoss, linear_cross_entropy


def _inputs(tokens=37, dim=24, vocab=101, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(tokens, dim, generator=g).to(dtype).requires_grad_()
    weight = (torch.randn(vocab, dim, generator=g) * dim**-0.5).to(dtype).requires_grad_()
    targets = torch.randint(0, vocab, (tokens,), generator=g)
    targets[::5] = IGNORE_INDEX
    return hidden, weight, targets


def _reference(hidden, weight, targets, reduction="mean"):
    logits = hidden @ weight.t()
    return F.cross_entropy(logits.float(), targets, ignore_index=IGNORE_INDEX, reduction=reduction)


@pytest.mark.parametrize("chunk_size", [1, 8, 37, 1000])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_matches_cross_entropy_on_full_logits_in_fp32_with_gradients(chunk_size, reduction):
    hidden, weight, targets = _inputs()
    loss = linear_cross_entropy(hidden, weight, targets, chunk_size=chunk_size, reduction=reduction)
    loss.backward()
    grads = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    ref = _reference(hidden, weight, targets, reduction)
    ref.backward()
    torch.testing.assert_close(loss, ref, atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(grads[0], hidden.grad, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(grads[1], weight.grad, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_row_blocks_smaller_than_a_chunk_give_the_same_result(monkeypatch, dtype):
    # With the real vocabulary a CPU chunk is processed a few rows at a time; force that here.
    import llamaops.platform.model.loss as loss_module

    hidden, weight, targets = _inputs(tokens=29, vocab=64, dtype=dtype)
    whole = linear_cross_entropy(hidden, weight, targets, chunk_size=12)
    whole.backward()
    grads = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    monkeypatch.setattr(loss_module, "_CPU_BLOCK_BYTES", 4 * 64 * 5)  # 5-row blocks
    blocked = linear_cross_entropy(hidden, weight, targets, chunk_size=12)
    blocked.backward()
    torch.testing.assert_close(blocked, whole, atol=0, rtol=0)
    torch.testing.assert_close(hidden.grad, grads[0], atol=0, rtol=0)
    torch.testing.assert_close(weight.grad, grads[1], atol=0, rtol=0)


def test_bf16_matches_the_unfused_bf16_loss_within_bf16_rounding():
    hidden, weight, targets = _inputs(tokens=64, dim=32, vocab=300, dtype=torch.bfloat16)
    loss = linear_cross_entropy(hidden, weight, targets, chunk_size=16)
    assert loss.dtype == torch.float32
    loss.backward()
    grads = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    ref = _reference(hidden, weight, targets)
    ref.backward()
    torch.testing.assert_close(loss, ref, atol=1e-5, rtol=1e-5)
    assert grads[0].dtype == grads[1].dtype == torch.bfloat16
    torch.testing.assert_close(grads[0], hidden.grad, atol=1e-4, rtol=2e-2)
    torch.testing.assert_close(grads[1], weight.grad, atol=1e-4, rtol=2e-2)


def test_upstream_gradient_scales_the_result_and_no_grad_gives_the_loss_alone():
    hidden, weight, targets = _inputs()
    (3.0 * linear_cross_entropy(hidden, weight, targets, chunk_size=10)).backward()
    grads = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    (3.0 * _reference(hidden, weight, targets)).backward()
    torch.testing.assert_close(grads[0], hidden.grad)
    torch.testing.assert_close(grads[1], weight.grad)
    with torch.no_grad():
        torch.testing.assert_close(
            linear_cross_entropy(hidden, weight, targets, chunk_size=10), _reference(hidden, weight, targets)
        )


def test_only_the_weight_or_only_the_hidden_states_need_a_gradient():
    hidden, weight, targets = _inputs()
    hidden = hidden.detach()
    linear_cross_entropy(hidden, weight, targets, chunk_size=9).backward()
    grad = weight.grad.clone()
    weight.grad = None
    _reference(hidden, weight, targets).backward()
    torch.testing.assert_close(grad, weight.grad)

    hidden, weight, targets = _inputs()
    weight.requires_grad_(False)
    linear_cross_entropy(hidden, weight, targets, chunk_size=9).backward()
    grad = hidden.grad.clone()
    hidden.grad = None
    _reference(hidden, weight, targets).backward()
    torch.testing.assert_close(grad, hidden.grad)
    assert weight.grad is None


def test_autocast_runs_the_matmuls_in_bf16_and_returns_fp32_gradients():
    hidden, weight, targets = _inputs(tokens=32, dim=32, vocab=200)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = linear_cross_entropy(hidden, weight, targets, chunk_size=7)
    loss.backward()
    assert weight.grad.dtype == hidden.grad.dtype == torch.float32
    with torch.no_grad():
        ref = _reference(hidden.bfloat16(), weight.bfloat16(), targets)
    torch.testing.assert_close(loss, ref, atol=1e-5, rtol=1e-5)


def test_all_targets_ignored_gives_nan_like_cross_entropy_and_shapes_are_checked():
    hidden, weight, targets = _inputs()
    with torch.no_grad():
        assert torch.isnan(linear_cross_entropy(hidden, weight, torch.full_like(targets, IGNORE_INDEX)))
    with pytest.raises(ValueError, match="do not match"):
        linear_cross_entropy(hidden, weight, targets[:-1])
    with pytest.raises(ValueError, match="reduction"):
        linear_cross_entropy(hidden, weight, targets, reduction="none")


def test_module_form_and_batched_shapes():
    hidden, weight, targets = _inputs(tokens=24)
    loss = LinearCrossEntropyLoss(chunk_size=5)(hidden.view(2, 12, -1), weight, targets.view(2, 12))
    torch.testing.assert_close(loss, _reference(hidden, weight, targets))


def test_transformer_with_targets_returns_the_loss_of_its_logits():
    cfg = ModelConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_hidden_dim=160, vocab_size=300, max_seq_len=64)
    model = Transformer(cfg)
    model.init_weights(seed=0)
    tokens = torch.randint(0, cfg.vocab_size, (2, 16))
    targets = F.pad(tokens[:, 1:], (0, 1), value=IGNORE_INDEX)
    loss = model(tokens, targets=targets, loss_chunk_size=7)
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    ref = F.cross_entropy(model(tokens).flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)
    ref.backward()
    torch.testing.assert_close(loss, ref, atol=1e-5, rtol=1e-6)
    for name, p in model.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, atol=1e-6, rtol=1e-4, msg=name)
