"""The continuous-batching engine: exact greedy decoding, join/leave at token boundaries, chunked
prefill, bounded queue, seeded sampling."""
import pytest

from llamaops.platform.serve import Engine, QueueFull, Request, SamplingParams

PROMPTS = [[5, 17, 300, 42], [9] * 37, [1000, 2000], list(range(100, 160)), [7, 8, 9, 10, 11]]


def test_greedy_matches_model_argmax_with_requests_of_every_length(small_model, tokenizer, greedy_reference):
    engine = Engine(small_model, tokenizer, max_batch=3, prefill_chunk=16)
    params = SamplingParams(max_tokens=12, temperature=0)
    requests = engine.generate(PROMPTS, params)  # 5 requests through 3 slots: joins and leaves mid-run
    for prompt, request in zip(PROMPTS, requests):
        assert request.generated == greedy_reference(prompt, 12)
        assert request.finish_reason == "length"


def test_requests_join_a_running_batch_at_token_boundaries(small_model, tokenizer, greedy_reference):
    engine = Engine(small_model, tokenizer, max_batch=4, prefill_chunk=64)
    first = engine.submit(Request(PROMPTS[0], SamplingParams(max_tokens=10, temperature=0)))
    for _ in range(4):
        engine.step()
    assert len(first.generated) == 5  # the prefill's token, then one per step
    late = engine.submit(Request(PROMPTS[1], SamplingParams(max_tokens=6, temperature=0)))
    engine.step()  # the newcomer is prefilled and joins the same step's decode while `first` goes on
    assert len(late.generated) == 2 and len(first.generated) == 6
    engine.run_until_idle()
    assert first.generated == greedy_reference(PROMPTS[0], 10)
    assert late.generated == greedy_reference(PROMPTS[1], 6)


def test_a_long_prompt_is_prefilled_in_chunks_while_others_decode(small_model, tokenizer, greedy_reference):
    engine = Engine(small_model, tokenizer, max_batch=4, prefill_chunk=8)
    short = engine.submit(Request([3, 4], SamplingParams(max_tokens=30, temperature=0)))
    engine.step()
    long = engine.submit(Request(list(range(500, 600)), SamplingParams(max_tokens=3, temperature=0)))
    for _ in range(5):
        engine.step()
    assert long.cursor == 40 and not long.generated  # 8 prompt tokens per step
    assert len(short.generated) == 7  # decoding never waited for the long prompt
    engine.run_until_idle()
    assert long.generated == greedy_reference(list(range(500, 600)), 3)
    assert short.generated == greedy_reference([3, 4], 30)


def test_stop_ids_and_stop_sequences_end_a_request(small_model, tokenizer):
    engine = Engine(small_model, tokenizer)
    free = engine.generate([PROMPTS[0]], SamplingParams(max_tokens=8, temperature=0))[0]
    stop_id = free.generated[3]
    by_id = engine.generate([PROMPTS[0]], SamplingParams(max_tokens=8, temperature=0, stop_ids=frozenset({stop_id})))[0]
    assert by_id.generated == free.generated[: free.generated.index(stop_id)] and by_id.finish_reason == "stop"
    text = tokenizer.decode(free.generated)
    stop = text[len(text) // 2 : len(text) // 2 + 2]
    by_text = engine.generate([PROMPTS[0]], SamplingParams(max_tokens=8, temperature=0, stop=(stop,)))[0]
    assert by_text.finish_reason == "stop" and by_text.text == text[: text.find(stop)]


def test_same_seed_same_output_and_different_seed_differs(small_model, tokenizer):
    engine = Engine(small_model, tokenizer, max_batch=8)

    def run(seed):
        params = SamplingParams(max_tokens=16, temperature=1.0, top_p=0.95, top_k=50, seed=seed)
        return [r.generated for r in engine.generate(PROMPTS[:3], params)]

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_a_full_queue_is_refused_instead_of_growing(small_model, tokenizer):
    engine = Engine(small_model, tokenizer, max_batch=1, max_queue=2)
    for _ in range(2):
        engine.submit(Request([1, 2], SamplingParams(max_tokens=2)))
    with pytest.raises(QueueFull):
        engine.submit(Request([1, 2], SamplingParams(max_tokens=2)))
    assert engine.metrics.rejected == 1


def test_a_request_that_cannot_fit_the_context_is_refused(small_model, tokenizer):
    engine = Engine(small_model, tokenizer)
    with pytest.raises(ValueError, match="context of 256"):
        engine.submit(Request([1] * 250, SamplingParams(max_tokens=10)))


def test_a_cancelled_request_leaves_the_batch_and_others_stay_exact(small_model, tokenizer, greedy_reference):
    engine = Engine(small_model, tokenizer, max_batch=4)
    params = SamplingParams(max_tokens=10, temperature=0)
    requests = [engine.submit(Request(p, params)) for p in PROMPTS[:3]]
    for _ in range(3):
        engine.step()
    engine.cancel(requests[0])
    engine.run_until_idle()
    assert requests[0].finish_reason == "cancelled"
    for prompt, request in zip(PROMPTS[1:3], requests[1:]):
        assert request.generated == greedy_reference(prompt, 10)
