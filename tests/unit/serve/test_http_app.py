"""The FastAPI app in process (real ASGI app and engine thread, no socket): readiness gating and
the Prometheus text the /metrics route serves."""
import re
import threading

import pytest
from fastapi.testclient import TestClient

from llamaops.platform.serve.loading import LoadedModel
from llamaops.platform.serve.server import ServerSettings, create_app

# One sample line of the Prometheus text exposition format: name{label="value",...} number
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"]*")*\})? (\S+)$')


def _wait_ready(client: TestClient) -> None:
    for _ in range(600):
        if client.get("/ready").status_code == 200:
            return
        threading.Event().wait(0.05)
    raise AssertionError("the app did not become ready")


def test_ready_only_once_loaded_while_health_answers_at_once(small_model):
    release = threading.Event()

    def load() -> LoadedModel:
        release.wait(30)
        return LoadedModel(small_model, "tiny", "memory")

    with TestClient(create_app(load, ServerSettings(max_batch=2))) as client:
        assert client.get("/health").status_code == 200
        waiting = client.get("/ready")
        assert waiting.status_code == 503 and "loading" in waiting.json()["reason"]
        busy = client.post("/v1/completions", json={"model": "tiny", "prompt": "hi", "max_tokens": 2})
        assert busy.status_code == 503 and busy.json()["error"]["message"].startswith("not ready")
        release.set()
        _wait_ready(client)
        assert client.get("/ready").json() == {"status": "ready", "model": "tiny"}


def test_a_failed_load_stays_unready_with_the_reason(small_model):
    failed = threading.Event()

    def load() -> LoadedModel:
        raise FileNotFoundError("no checkpoint at /nowhere")

    with TestClient(create_app(load, ServerSettings(), on_load_failure=failed.set)) as client:
        assert failed.wait(10)
        response = client.get("/ready")
        assert response.status_code == 503 and "no checkpoint at /nowhere" in response.json()["reason"]


def _families(text: str) -> tuple[dict[str, str], list[tuple[str, str, float]]]:
    types, samples = {}, []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types[name] = kind
        elif line and not line.startswith("# HELP "):
            match = _SAMPLE.match(line)
            assert match, f"not a Prometheus sample line: {line!r}"
            samples.append((match[1], match[2] or "", float(match[4])))
    return types, samples


def test_metrics_are_valid_prometheus_text_and_count_the_work(small_model):
    load = lambda: LoadedModel(small_model, "tiny", "memory")  # noqa: E731
    with TestClient(create_app(load, ServerSettings(max_batch=2))) as client:
        _wait_ready(client)
        for _ in range(3):
            reply = client.post("/v1/completions", json={"model": "tiny", "prompt": "Hello there", "max_tokens": 4})
            assert reply.status_code == 200, reply.text
        response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    types, samples = _families(response.text)
    for name, _, _ in samples:  # every sample belongs to a declared family
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
        assert family in types, name
    value = {(n, labels): v for n, labels, v in samples}
    assert value[("llamaops_requests_total", '{model="tiny"}')] == 3
    assert value[("llamaops_generation_tokens_total", '{model="tiny"}')] == 3 * 4
    assert value[("llamaops_generation_tokens_per_second", '{model="tiny"}')] > 0
    assert ("llamaops_queue_depth", '{model="tiny"}') in value and ("llamaops_batch_size", '{model="tiny"}') in value
    buckets = [v for n, _, v in samples if n == "llamaops_time_to_first_token_seconds_bucket"]
    assert buckets == sorted(buckets) and buckets[-1] == value[("llamaops_time_to_first_token_seconds_count", '{model="tiny"}')] == 3
    assert value[("llamaops_http_responses_total", '{route="/v1/completions",status="200"}')] == 3


NESTED = '{"model": "tiny", "prompt": "hi", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
UNSUPPORTED = [
    '{"model": "tiny", "prompt": "hi", "logprobs": 3}',
    '{"model": "tiny", "prompt": "hi", "echo": true}',
    '{"model": "tiny", "prompt": "hi", "presence_penalty": 0.5}',
    '{"model": "tiny", "prompt": "hi", "frequency_penalty": -1}',
    '{"model": "tiny", "prompt": "hi", "logit_bias": {"50256": -100}}',
    '{"model": "tiny", "prompt": "hi", "response_format": {"type": "json_object"}}',
]


@pytest.mark.parametrize("body", ["{not json", '{"model": "tiny"}', NESTED, '{"model": "\\ud800", "prompt": "hi"}',
                                  '{"model": "tiny", "prompt": "\\udfff"}', *UNSUPPORTED])
def test_malformed_bodies_get_a_400_in_the_openai_error_shape(small_model, body):
    load = lambda: LoadedModel(small_model, "tiny", "memory")  # noqa: E731
    with TestClient(create_app(load, ServerSettings())) as client:
        _wait_ready(client)
        response = client.post("/v1/completions", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]


def test_the_off_value_of_an_unsupported_knob_is_accepted(small_model):
    with TestClient(create_app(lambda: LoadedModel(small_model, "tiny", "memory"), ServerSettings())) as client:
        _wait_ready(client)
        response = client.post("/v1/completions", json={
            "model": "tiny", "prompt": "hi", "max_tokens": 2, "logprobs": None, "presence_penalty": 0,
            "response_format": {"type": "text"}})
    assert response.status_code == 200, response.text


def test_metric_labels_stay_bounded_and_escaped(small_model):
    settings = ServerSettings(api_key="k")
    with TestClient(create_app(lambda: LoadedModel(small_model, 'ti"ny\\', "memory"), settings)) as client:
        _wait_ready(client)
        for i in range(30):  # unauthenticated, each a path never seen before
            assert client.get(f"/v1/probe-{i}").status_code == 401
        text = client.get("/metrics").text
    http_lines = [line for line in text.splitlines()
                  if line.startswith("llamaops_http_responses_total") and "/ready" not in line]
    assert http_lines == ['llamaops_http_responses_total{route="other",status="401"} 30']
    assert 'llamaops_requests_total{model="ti\\"ny\\\\"} 0' in text.splitlines()


def test_a_busy_port_is_one_error_before_any_model_loads():
    import socket

    from llamaops.platform.serve.server import ServeError, run_server

    loads = []
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServeError, match=f"cannot listen on 127.0.0.1:{port}"):
            run_server(lambda: loads.append(1), ServerSettings(), "127.0.0.1", port)
    assert loads == []
