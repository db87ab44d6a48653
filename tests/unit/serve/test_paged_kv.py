"""Paged KV blocks: same tokens as the dense cache, blocks taken as tokens arrive, all returned on
finish or cancel, and requests admitted only when their blocks are free."""
import pytest
import torch

from llamaops.platform.model import KVCache
from llamaops.platform.serve import Engine, QueueFull, Request, SamplingParams
from llamaops.platform.serve.kv_store import PagedRows

PROMPTS = [[5, 17, 300, 42], [9] * 37, [1000, 2000], list(range(100, 160)), [7, 8, 9, 10, 11]]


def assert_no_blocks_held(engine: Engine) -> None:
    assert sorted(engine.kv.free) == list(range(1, engine.kv.total + 1)) and engine.kv.reserved == 0


def test_paged_blocks_read_back_what_the_dense_cache_holds(small_model):
    cfg = small_model.cfg
    g = torch.Generator().manual_seed(0)
    dense = KVCache.allocate(cfg, 3, 64)
    paged = PagedRows(cfg, blocks=40, block_size=8, dtype=torch.float32, device="cpu")
    requests = [Request(list(range(n)), SamplingParams(max_tokens=64 - n)) for n in (5, 20, 33)]
    for request in requests:
        assert paged.admit(request)
    lengths = [0, 0, 0]
    for chunk in ([5, 9, 17], [1, 11, 16], [1, 1, 1]):  # a prefill in pieces, then decode steps
        width = max(chunk)
        positions = torch.tensor([[min(n + i, n + c - 1) for i in range(width)] for n, c in zip(lengths, chunk)])
        k = torch.randn(3, width, cfg.n_kv_heads, cfg.head_dim, generator=g)
        v = torch.randn(3, width, cfg.n_kv_heads, cfg.head_dim, generator=g)
        lengths = [n + c for n, c in zip(lengths, chunk)]
        for request, n in zip(requests, lengths):
            paged.grow(request, n)
        for layer in range(cfg.n_layers):
            want = dense.update(layer, positions, k, v, length=max(lengths))
            got = paged.view(requests, 0).update(layer, positions, k, v, length=max(lengths))
            for row, n in enumerate(lengths):  # positions past a row's length are masked, never read
                torch.testing.assert_close(got[0][row, :, :n], want[0][row, :, :n], rtol=0, atol=0)
                torch.testing.assert_close(got[1][row, :, :n], want[1][row, :, :n], rtol=0, atol=0)


def test_paged_output_is_the_dense_output(small_model, tokenizer):
    params = SamplingParams(max_tokens=12, temperature=0)
    dense = Engine(small_model, tokenizer, max_batch=3, prefill_chunk=16)
    paged = Engine(small_model, tokenizer, max_batch=3, prefill_chunk=16, kv_block_size=8)
    expected = [r.generated for r in dense.generate(PROMPTS, params)]
    assert [r.generated for r in paged.generate(PROMPTS, params)] == expected
    assert_no_blocks_held(paged)


def test_blocks_are_taken_as_tokens_arrive_and_reused_after_finish(small_model, tokenizer):
    engine = Engine(small_model, tokenizer, max_batch=2, kv_block_size=16, kv_blocks=8)
    request = engine.submit(Request([9] * 37, SamplingParams(max_tokens=20, temperature=0)))
    engine.step()  # 37 prompt tokens + the decode of the first generated one: 38 positions
    assert engine.kv.table(request) == [1, 2, 3]
    assert engine.kv.reserved == 4 - 3  # 37 + 20 tokens need 4 blocks; one is still only promised
    for _ in range(10):
        engine.step()
    assert len(engine.kv.table(request)) == 3  # positions 0..47 fill three blocks exactly
    engine.step()
    assert len(engine.kv.table(request)) == 4  # position 48 opens the fourth
    engine.run_until_idle()
    assert_no_blocks_held(engine)
    again = engine.submit(Request([9] * 37, SamplingParams(max_tokens=20, temperature=0)))
    engine.step()
    assert engine.kv.table(again) == [1, 2, 3]  # the same blocks, handed out again
    engine.run_until_idle()
    assert again.generated == request.generated


def test_cancelled_requests_return_their_blocks(small_model, tokenizer):
    engine = Engine(small_model, tokenizer, max_batch=4, prefill_chunk=8, kv_block_size=8)
    decoding = engine.submit(Request([1, 2, 3], SamplingParams(max_tokens=50, temperature=0)))
    engine.step()
    prefilling = engine.submit(Request(list(range(200, 260)), SamplingParams(max_tokens=5, temperature=0)))
    engine.step()
    assert prefilling.cursor and not prefilling.generated and decoding.generated
    engine.cancel(decoding)
    engine.cancel(prefilling)
    engine.step()
    assert {decoding.finish_reason, prefilling.finish_reason} == {"cancelled"}
    assert_no_blocks_held(engine)


def test_requests_wait_for_blocks_and_a_full_queue_is_refused(small_model, tokenizer, greedy_reference):
    # 4 blocks of 16 tokens; each request needs 30 + 10 tokens = 3 blocks: one at a time.
    engine = Engine(small_model, tokenizer, max_batch=4, max_queue=1, kv_block_size=16, kv_blocks=4)
    params = SamplingParams(max_tokens=10, temperature=0)
    first = engine.submit(Request(list(range(300, 330)), params))
    engine.step()
    second = engine.submit(Request(list(range(400, 430)), params))
    engine.step()
    assert len(first.generated) == 3 and not second.generated and list(engine.waiting) == [second]
    with pytest.raises(QueueFull):
        engine.submit(Request([1, 2], params))
    with pytest.raises(ValueError, match="KV cache"):
        engine.submit(Request(list(range(60)), params))  # 70 tokens: more than the whole pool
    engine.run_until_idle()
    assert first.generated == greedy_reference(list(range(300, 330)), 10)
    assert second.generated == greedy_reference(list(range(400, 430)), 10)
    assert_no_blocks_held(engine)
