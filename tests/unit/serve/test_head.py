"""The engine's output head: the int8-screened greedy choice is the model's argmax, always."""
import pytest
import torch
import torch.nn.functional as F

from llamaops.platform.serve import Engine, Request, SamplingParams
from llamaops.platform.serve.head import Int8Screen, OutputHead

VOCAB, DIM = 20_000, 128


def output_matrix(dtype=torch.float32, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(VOCAB, DIM, generator=g) * DIM**-0.5).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_screened_argmax_equals_the_full_projection_argmax(dtype):
    weight = output_matrix(dtype)
    head = OutputHead(weight)
    assert head.screen is not None
    g = torch.Generator().manual_seed(1)
    # Hidden states of several scales, in batches of 1 and 16 rows.
    for scale in (0.1, 1.0, 30.0):
        for rows in (1, 8, 16):  # 16 rows: past SCREEN_MAX_ROWS, the full projection
            hidden = (torch.randn(rows, DIM, generator=g) * scale).to(dtype)
            assert head.argmax(hidden) == F.linear(hidden, weight).argmax(-1).tolist()


def test_the_screen_keeps_few_candidates_and_always_the_true_one():
    weight = output_matrix()
    screen = Int8Screen(weight)
    hidden = torch.randn(64, DIM, generator=torch.Generator().manual_seed(2))
    survivors = screen.candidates(hidden)
    best = F.linear(hidden, weight).argmax(-1)
    assert survivors[torch.arange(64), best].all()
    assert survivors.sum(-1).float().median() < 20  # a screen that keeps everything saves nothing


@pytest.mark.parametrize("near_rows", [40, 200])
def test_logits_closer_than_the_int8_error_are_decided_exactly(near_rows):
    # Rows that differ from one another far less than int8 rounding does: the screen cannot rank
    # them, so it must keep them all and the exact recompute (or, past MAX_CANDIDATES, the full
    # projection) decides.
    g = torch.Generator().manual_seed(4)
    weight = output_matrix()
    base = weight[0].clone()
    weight[1000 : 1000 + near_rows] = base + 1e-4 * torch.randn(near_rows, DIM, generator=g)
    head = OutputHead(weight)
    for _ in range(20):
        hidden = (base * 10 + 0.01 * torch.randn(DIM, generator=g)).unsqueeze(0)
        assert head.argmax(hidden) == F.linear(hidden, weight).argmax(-1).tolist()


def test_tied_rows_fall_back_to_the_models_own_first_index():
    weight = output_matrix()
    weight[7000] = weight[3000]  # two identical rows: every logit ties, argmax takes the first
    hidden = weight[3000].unsqueeze(0) * 10  # makes that pair the clear winners
    assert OutputHead(weight).argmax(hidden) == [3000] == F.linear(hidden, weight).argmax(-1).tolist()


def test_no_screen_where_the_int8_kernel_cannot_run():
    assert Int8Screen.build(torch.randn(100, 100)) is None  # dim % 32 != 0: the kernel misreads it
    head = OutputHead(torch.randn(100, 100), screen=True)
    hidden = torch.randn(3, 100)
    assert head.screen is None and head.argmax(hidden) == F.linear(hidden, head.weight).argmax(-1).tolist()


def test_engine_greedy_tokens_are_the_same_with_and_without_the_screen(small_model, tokenizer):
    prompts = [[5, 17, 300, 42], [9] * 37, list(range(100, 160))]
    params = SamplingParams(max_tokens=20, temperature=0)
    screened = Engine(small_model, tokenizer, max_batch=3)
    plain = Engine(small_model, tokenizer, max_batch=3, screen_greedy=False)
    assert screened.head.screen is not None and plain.head.screen is None
    assert [r.generated for r in screened.generate(prompts, params)] == [r.generated for r in plain.generate(prompts, params)]


def test_greedy_and_sampled_requests_share_a_step(small_model, tokenizer):
    engine = Engine(small_model, tokenizer, max_batch=4)
    greedy = SamplingParams(max_tokens=10, temperature=0)
    sampled = SamplingParams(max_tokens=10, temperature=1.0, top_k=20, seed=3)
    mixed = engine.generate([[1, 2, 3], [4, 5, 6]], greedy)  # reference: greedy alone
    together = [engine.submit(r) for r in (
        Request([1, 2, 3], greedy),
        Request([7, 8], sampled),
    )]
    engine.run_until_idle()
    assert together[0].generated == mixed[0].generated
    alone = engine.generate([[7, 8]], sampled)[0]
    assert together[1].generated == alone.generated  # the seed alone decides a sampled request
