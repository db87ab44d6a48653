import threading

import pytest
import torch

from llamaops.platform.serve import Engine, EngineFull, SamplingParams


def _argmax_without_cache(model, prompt, n):
    tokens = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            tokens.append(int(model(torch.tensor([tokens]))[0, -1].argmax()))
    return tokens[len(prompt) :]


PROMPTS = [[1, 2, 3, 4, 5, 6, 7], [9], [200, 17, 33], list(range(40, 90)), [5, 5]]


def test_greedy_equals_plain_forward_argmax_with_continuous_batching_and_chunked_prefill(sharp_model):
    # 3 slots for 5 requests: requests join as others leave; a budget of 8 tokens chunks the 50-token prompt.
    engine = Engine(sharp_model, max_batch=3, token_budget=8)
    requests = [engine.submit(p, SamplingParams(max_tokens=n)) for p, n in zip(PROMPTS, [12, 3, 9, 6, 1])]
    engine.run_until_idle()
    for request, n in zip(requests, [12, 3, 9, 6, 1]):
        assert request.tokens == _argmax_without_cache(sharp_model, request.prompt, n)
        assert request.finish_reason == "length"
    assert max(engine.batch_sizes) == 3 and engine.steps > 12 and not engine.busy


def test_stop_ids_end_a_request_with_reason_stop(sharp_model):
    free = _argmax_without_cache(sharp_model, PROMPTS[0], 6)
    engine = Engine(sharp_model, stop_ids={free[2]})
    [request] = engine.generate([PROMPTS[0]], SamplingParams(max_tokens=6))
    assert request.tokens == free[: free.index(free[2])] and request.finish_reason == "stop"


def test_stop_strings_use_the_decoder(sharp_model):
    free = _argmax_without_cache(sharp_model, PROMPTS[2], 8)
    engine = Engine(sharp_model, decode=lambda ids: " ".join(map(str, ids)))
    [request] = engine.generate([PROMPTS[2]], SamplingParams(max_tokens=8, stop=(str(free[3]),)))
    assert request.finish_reason == "stop" and request.tokens[-1] == free[3]


def test_same_seed_same_output_and_sampling_differs_from_greedy(sharp_model):
    engine = Engine(sharp_model, max_batch=4)
    params = SamplingParams(max_tokens=10, temperature=5.0, top_p=0.95, top_k=50, seed=7)
    a, b, c = engine.generate([PROMPTS[0]] * 3, params)
    assert a.tokens == b.tokens == c.tokens
    other = engine.generate([PROMPTS[0]], SamplingParams(max_tokens=10, temperature=5.0, seed=8))[0]
    assert other.tokens != a.tokens


def test_over_long_prompts_and_a_full_queue_are_refused(sharp_model):
    engine = Engine(sharp_model, max_queue=2)
    with pytest.raises(ValueError, match="exceeds the context length 128"):
        engine.submit(list(range(100)), SamplingParams(max_tokens=40))
    with pytest.raises(ValueError, match="empty"):
        engine.submit([], SamplingParams())
    engine.submit([1], SamplingParams())
    engine.submit([1], SamplingParams())
    with pytest.raises(EngineFull, match="queue is full"):
        engine.submit([1], SamplingParams())


def test_background_loop_streams_tokens_and_stop_finishes_in_flight(sharp_model):
    engine = Engine(sharp_model, max_batch=2)
    engine.start()
    requests = [engine.submit(p, SamplingParams(max_tokens=5)) for p in PROMPTS[:3]]
    engine.stop()
    for request in requests:
        streamed = []
        while (token := request.events.get(timeout=5)) is not None:
            streamed.append(token)
        assert streamed == request.tokens and len(streamed) == 5
    assert not any(t.name == "llamaops-engine" for t in threading.enumerate())


def test_the_model_fixture_depends_on_context(sharp_model):
    # Otherwise the greedy comparisons above could pass with a broken cache.
    assert _argmax_without_cache(sharp_model, [5, 9], 4) != _argmax_without_cache(sharp_model, [7, 9], 4)
