"""FP8 weights (serve/fp8.py) on the CPU reference path: what is quantized, how exactly, and how
far a trained model's layers and greedy choices move from bf16."""
import copy

import pytest
import torch
import torch.nn.functional as F

from llamaops.platform.align.conversations import load_conversations
from llamaops.platform.config.model import ModelConfig
from llamaops.platform.model import Transformer
from llamaops.platform.model.checkpoint import save_model
from llamaops.platform.model.sizing import generation_memory
from llamaops.platform.serve.fp8 import (
    ACTIVATION_AMAX_BOUND,
    FP8,
    FP8_MAX,
    Fp8Linear,
    fp8_layers,
    quantize_rows,
    scaled_matmul,
    to_fp8,
)
from llamaops.platform.serve.fp8_accuracy import greedy_agreement, layer_errors
from llamaops.platform.serve.tensor_parallel import TensorParallelGroup, load_tensor_parallel

# e4m3 keeps 3 mantissa bits: rounding moves a value by at most 2^-4 of it, and a uniformly placed
# value by 2^-4 / sqrt(3) * ~0.72 (the mean of 1/(1+f) over a binade) ~ 2.6% RMS. A projection's
# output sums products of two such operands with independent errors, so its relative error is
# about sqrt(2) * 2.6% ~ 3.7% (bf16, with 7 bits, 16x less: the same formula gives 0.23%, which
# the test measures too). 6% leaves room for outliers and for rows whose values cluster low in a binade.
LAYER_ERROR_BOUND = 0.06
GREEDY_AGREEMENT_BOUND = 0.95  # of next-token choices along bf16's own greedy continuations
PROMPTS = ["Hello, how are you", "What is your name", "I like to", "Do you know", "The weather is", "Tell me a joke",
           "What do you think about", "Can you help me", "Where do you live", "Are you a robot"]


@pytest.fixture(scope="module")
def byte_model() -> Transformer:
    """A byte-level model (vocabulary 256) trained for a few seconds on the packaged English
    dialogs, so its next-byte choices are confident the way a real model's are."""
    text = " ".join(m.content for c in load_conversations(["english"]) for m in c.messages).encode()
    data = torch.tensor(list(text))
    cfg = ModelConfig(dim=96, n_layers=4, n_heads=4, n_kv_heads=2, ffn_hidden_dim=256, vocab_size=256, max_seq_len=128)
    model = Transformer(cfg)
    model.init_weights(seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(400):
        starts = torch.randint(0, len(data) - 65, (16,), generator=generator)
        rows = torch.stack([data[s : s + 65] for s in starts])
        loss = F.cross_entropy(model(rows[:, :-1]).flatten(0, 1), rows[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(loss) < 2.0  # well below uniform bytes (ln 256 = 5.5): it has learned
    return model.eval()


def test_rounding_stays_within_half_a_step_of_each_value():
    x = torch.randn(64, 512, generator=torch.Generator().manual_seed(0)) * torch.logspace(-3, 2, 64).unsqueeze(1)
    values, scales = quantize_rows(x)
    assert values.dtype == FP8 and scales.shape == (64, 1)
    assert torch.equal(scales, x.abs().amax(dim=1, keepdim=True) / FP8_MAX)  # one scale per row, its max at 448
    error = (values.float() * scales - x).abs()
    subnormal_step = 2.0**-9 * scales  # e4m3's smallest step, below 2^-6
    assert bool((error <= torch.maximum(x.abs() * 2.0**-4, subnormal_step / 2) * (1 + 1e-6)).all())


def test_activations_are_capped_at_the_papers_bound():
    token = torch.tensor([[5000.0, 600.0, 1.0, -3000.0]])
    values, scale = quantize_rows(token, ACTIVATION_AMAX_BOUND)
    assert float(scale) == pytest.approx(ACTIVATION_AMAX_BOUND / FP8_MAX)
    assert (values.float() * scale).tolist()[0][::3] == pytest.approx([ACTIVATION_AMAX_BOUND, -ACTIVATION_AMAX_BOUND])


def test_the_reference_product_is_the_fp8_arithmetic():
    g = torch.Generator().manual_seed(1)
    x, w = torch.randn(5, 64, generator=g), torch.randn(32, 64, generator=g)
    (xq, xs), (wq, ws) = quantize_rows(x), quantize_rows(w)
    exact = (xq.double() * xs.double()) @ (wq.double() * ws.double()).t()
    assert torch.allclose(scaled_matmul(xq, xs, wq, ws.view(-1), torch.float32).double(), exact, rtol=1e-5, atol=1e-6)


def test_only_the_inner_blocks_feed_forward_goes_to_fp8(byte_model):
    quantized = to_fp8(copy.deepcopy(byte_model))
    fp8 = {name for name, module in quantized.named_modules() if isinstance(module, Fp8Linear)}
    assert list(fp8_layers(byte_model.cfg)) == [1, 2]
    assert fp8 == {f"layers.{i}.feed_forward.{w}" for i in (1, 2) for w in ("w1", "w2", "w3")}


def test_each_fp8_layer_stays_within_the_bound_of_its_bf16_output(byte_model):
    rows = torch.tensor([list(b" ".join(p.encode() for p in PROMPTS))[: byte_model.cfg.max_seq_len]])
    errors = layer_errors(byte_model, rows)
    assert set(errors) == {f"{i}.{w}" for i in (1, 2) for w in ("w1", "w3", "w2")}
    for name, (bf16, fp8, between) in errors.items():
        assert bf16 < 0.01 and fp8 < LAYER_ERROR_BOUND and between < LAYER_ERROR_BOUND, name


def test_greedy_choices_agree_with_bf16(byte_model):
    kept, total, _ = greedy_agreement(byte_model, [list(p.encode()) for p in PROMPTS], tokens=32)
    assert kept / total >= GREEDY_AGREEMENT_BOUND, f"{kept}/{total}"


def test_a_rank_holds_the_bytes_the_serving_plan_counts(byte_model, tmp_path):
    directory = save_model(byte_model, tmp_path / "model")
    model, _ = load_tensor_parallel(directory, TensorParallelGroup(0, 1, None), torch.device("cpu"), None, fp8=True)
    held = sum(p.numel() * p.element_size() for p in model.parameters())
    cfg = byte_model.cfg
    planned = generation_memory(cfg, 1, rows=1, context=1, compute_bytes=4, fp8_layers=len(fp8_layers(cfg)))
    assert held == planned.weights_bytes
    two_blocks_ffn = 2 * 3 * cfg.dim * cfg.ffn_hidden_dim  # blocks 1 and 2, at 1 byte instead of 4
    assert held < generation_memory(cfg, 1, rows=1, context=1, compute_bytes=4).weights_bytes - 2 * two_blocks_ffn
