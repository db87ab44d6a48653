"""One request's parameters harm nobody else: sampling is total over every value validation
admits, and a request whose token cannot be drawn fails alone, with an error its client sees."""
import json
import logging
import threading

import pytest
import torch
from fastapi.testclient import TestClient

from llamaops.platform.serve import Engine, Request, SamplingParams
from llamaops.platform.serve import engine as engine_module
from llamaops.platform.serve.loading import LoadedModel
from llamaops.platform.serve.sampling import make_generator, sample
from llamaops.platform.serve.server import ServerSettings, create_app

EDGE_TOP_P = [1e-46, 1e-38, 1e-8, 0.5, 1.0]  # 1e-46 is below float32's smallest subnormal
EDGE_TEMPERATURES = [1e-46, 1e-30, 1e-6, 0.5, 2.0]


@pytest.mark.parametrize("top_p", EDGE_TOP_P)
@pytest.mark.parametrize("temperature", EDGE_TEMPERATURES)
@pytest.mark.parametrize("top_k", [0, 1, 5, 500_000])
def test_every_admitted_sampling_value_draws_a_valid_token(top_p, temperature, top_k):
    logits = torch.randn(1000, generator=torch.Generator().manual_seed(0)) * 30
    params = SamplingParams(max_tokens=1, temperature=temperature, top_p=top_p, top_k=top_k)
    token = sample(logits, params, make_generator(0))
    assert 0 <= token < 1000
    if temperature < 1e-5 or top_p < 1e-8 or top_k == 1:  # a point mass on the argmax
        assert token == int(logits.argmax())


def _stream(request: Request, done: threading.Event):
    outputs = []

    def on_output(output):
        outputs.append(output)
        if output.finish_reason is not None:
            done.set()

    request.on_output = on_output
    return outputs


def test_a_tiny_top_p_among_running_requests_finishes_like_them(small_model, tokenizer):
    engine = Engine(small_model, tokenizer, max_batch=4)
    engine.start()
    try:
        requests, events = [], []
        for top_p in (0.9, 1e-46, 0.95):
            done = threading.Event()
            request = Request([5, 17, 300, 42], SamplingParams(max_tokens=30, temperature=1.0, top_p=top_p, seed=3))
            _stream(request, done)
            requests.append(engine.submit(request))
            events.append(done)
        assert all(e.wait(60) for e in events)
    finally:
        engine.close(10)
    assert [(r.finish_reason, len(r.generated)) for r in requests] == [("length", 30)] * 3


@pytest.fixture
def draw_fails_for_seed_13(monkeypatch):
    """A stand-in for a draw that fails on one request's input (no value validation admits does
    any more): the real `sample`, raising for requests seeded 13."""

    def failing_sample(logits, params, generator):
        if params.seed == 13:
            raise RuntimeError("invalid multinomial distribution")
        return sample(logits, params, generator)

    monkeypatch.setattr(engine_module, "sample", failing_sample)


def test_a_request_whose_draw_fails_fails_alone_and_is_logged(small_model, tokenizer, draw_fails_for_seed_13, caplog):
    engine = Engine(small_model, tokenizer, max_batch=4)
    seeds = (1, 13, 2)
    with caplog.at_level(logging.ERROR, logger="llamaops.serve"):
        requests = [engine.submit(Request([5, 17, 300, 42], SamplingParams(max_tokens=20, seed=s))) for s in seeds]
        engine.run_until_idle()
    assert requests[1].finish_reason.startswith("error: RuntimeError")
    assert [(r.finish_reason, len(r.generated)) for r in (requests[0], requests[2])] == [("length", 20)] * 2
    assert any(f"request {requests[1].id} failed" in r.getMessage() for r in caplog.records)
    assert engine.metrics.finish_reasons["error"] == 1 and not engine.busy


def _events(response) -> list:
    return [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]


def test_streams_beside_a_failing_one_get_all_their_tokens_and_it_gets_an_error_event(
        small_model, draw_fails_for_seed_13):
    app = create_app(lambda: LoadedModel(small_model, "tiny", "memory"), ServerSettings(max_batch=4))
    with TestClient(app) as client:
        for _ in range(600):
            if client.get("/ready").status_code == 200:
                break
            threading.Event().wait(0.05)
        results = {}

        def stream(name: str, **body):
            payload = {"model": "tiny", "prompt": "Once upon a time", "max_tokens": 40, "stream": True,
                       "temperature": 1.0, **body}
            with client.stream("POST", "/v1/completions", json=payload) as response:
                results[name] = (response.status_code, _events(response))

        threads = [threading.Thread(target=stream, args=(name,), kwargs=body) for name, body in
                   (("a", {"seed": 1}), ("tiny_top_p", {"top_p": 1e-46, "seed": 2}), ("fails", {"seed": 13}),
                    ("b", {"seed": 3}))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        for name in ("a", "b", "tiny_top_p"):
            status, events = results[name]
            chunks = [json.loads(e) for e in events[:-1]]
            assert status == 200 and events[-1] == "[DONE]"
            assert chunks[-1]["choices"][0]["finish_reason"] == "length", name
            assert len(chunks) == 40, name  # one chunk per token: every token came
        status, events = results["fails"]
        error = json.loads(events[-2])["error"]
        assert error["type"] == "server_error" and "generation failed" in error["message"]
        assert all(json.loads(e).get("choices", [{}])[0].get("finish_reason") is None for e in events[:-2])
        plain = client.post("/v1/completions", json={"model": "tiny", "prompt": "hi", "max_tokens": 5, "seed": 13})
        assert plain.status_code == 500 and plain.json()["error"]["type"] == "server_error"
