"""`llamaops serve` as a real process on a free 127.0.0.1 port, driven by the official openai client."""
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from .servers import API_KEY, free_port, post, save_tiny_model, start_server

openai = pytest.importorskip("openai", reason="the openai client is in the test extra: scripts/install.sh --test")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny", seed=0)


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    proc, base = start_server(model_dir, tmp_path_factory.mktemp("logs"), "--max-queue", "4", "--max-batch", "2")
    yield base
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key=API_KEY, max_retries=0)


def test_openai_client_lists_models_and_completes(client):
    assert [m.id for m in client.models.list().data] == ["tiny"]
    completion = client.completions.create(model="tiny", prompt="The capital of France is", max_tokens=5, temperature=0)
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 5 and completion.usage.prompt_tokens == 6


def test_chat_non_streaming_and_streaming_agree_under_greedy(client):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello!"}]
    whole = client.chat.completions.create(model="tiny", messages=messages, max_tokens=8, temperature=0)
    chunks = list(client.chat.completions.create(model="tiny", messages=messages, max_tokens=8, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == whole.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens == 8


def test_same_seed_gives_the_same_sample(client):
    def ask(seed: int) -> str:
        return client.completions.create(model="tiny", prompt="Once", max_tokens=8, temperature=1.0,
                                         top_p=0.9, seed=seed).choices[0].text

    assert ask(7) == ask(7)


def test_tools_and_tool_results_reach_the_prompt(client):
    """A random model will not call a tool by itself, so this checks the request side over HTTP:
    the tool schemas go into the prompt, and an assistant call plus its result are accepted and
    rendered. The reply side (a generated call -> `tool_calls`) is pinned in tests/unit/serve."""
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    question = [{"role": "user", "content": "Weather in Paris?"}]
    plain = client.chat.completions.create(model="tiny", messages=question, max_tokens=2, temperature=0)
    offered = client.chat.completions.create(model="tiny", messages=question, tools=tools, max_tokens=2, temperature=0)
    schema_tokens = offered.usage.prompt_tokens - plain.usage.prompt_tokens
    assert schema_tokens > 40  # system prompt with "Environment: ipython" and the JSON schema
    follow_up = question + [
        {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function",
                                              "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C, sunny"},
    ]
    answer = client.chat.completions.create(model="tiny", messages=follow_up, tools=tools, max_tokens=2, temperature=0)
    assert answer.usage.prompt_tokens > offered.usage.prompt_tokens + 10  # the call and its result were rendered
    assert answer.usage.completion_tokens == 2


@pytest.mark.parametrize(
    "body, status, code",
    [
        (b"{not json", 400, None),
        ({"model": "other", "prompt": "x"}, 404, "model_not_found"),
        ({"model": "tiny", "prompt": "x", "max_tokens": 10_000}, 400, "context_length_exceeded"),
        ({"model": "tiny", "prompt": "word " * 300}, 400, "context_length_exceeded"),
        ({"model": "tiny", "prompt": "x", "temperature": -1}, 400, None),
    ],
)
def test_bad_requests_get_an_openai_error_body(server, body, status, code):
    got, payload = post(server, "/v1/completions", body)
    assert got == status
    assert payload["error"]["message"] and payload["error"]["code"] == code


def test_a_wrong_or_missing_key_is_refused(server):
    assert post(server, "/v1/completions", {"model": "tiny", "prompt": "x"}, key="wrong")[0] == 401
    assert post(server, "/v1/completions", {"model": "tiny", "prompt": "x"}, key=None)[0] == 401
    with urllib.request.urlopen(f"{server}/health") as r:  # probes need no key
        assert r.status == 200


def test_a_burst_beyond_the_queue_is_shed_with_429_and_the_server_stays_up(server, client):
    results: list[int] = []

    def one():
        results.append(post(server, "/v1/completions", {"model": "tiny", "prompt": "burst", "max_tokens": 60})[0])

    threads = [threading.Thread(target=one) for _ in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(results) <= {200, 429} and 429 in results and 200 in results
    assert client.completions.create(model="tiny", prompt="still up", max_tokens=2).usage.completion_tokens == 2
    with urllib.request.urlopen(f"{server}/metrics") as r:
        metrics = r.read().decode()
    assert 'llamaops_requests_rejected_total{model="tiny"}' in metrics
    rejected = next(line for line in metrics.splitlines()
                    if line.startswith("llamaops_requests_rejected_total"))
    assert float(rejected.split()[-1]) >= 1


def test_sigterm_lets_in_flight_requests_finish(model_dir, tmp_path):
    proc, base = start_server(model_dir, tmp_path, key=None)
    outcome: list = []

    def long_request():
        outcome.append(post(base, "/v1/completions", {"model": "tiny", "prompt": "long", "max_tokens": 200}, key=None))

    worker = threading.Thread(target=long_request)
    worker.start()
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    worker.join(60)
    assert outcome and outcome[0][0] == 200 and outcome[0][1]["usage"]["completion_tokens"] == 200
    assert proc.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after a clean drain
    with pytest.raises(urllib.error.URLError):  # and new connections are refused
        urllib.request.urlopen(f"{base}/health", timeout=2)


def test_a_model_that_does_not_exist_fails_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "llamaops.cli.main", "serve", str(tmp_path / "missing"),
                             "--port", str(free_port())], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: ") and "does not exist" in result.stderr


def test_a_paged_kv_server_answers_like_the_dense_one_and_sheds_what_its_blocks_cannot_hold(server, model_dir, tmp_path):
    # 4 blocks of 16 tokens: one 40-token request at a time; a request over 64 tokens never fits.
    proc, paged = start_server(model_dir, tmp_path, "--kv-block-size", "16", "--kv-blocks", "4", "--max-queue", "2",
                               "--max-prefills", "2")
    try:
        body = {"model": "tiny", "prompt": "The capital of France is", "max_tokens": 30, "temperature": 0}
        dense_status, dense = post(server, "/v1/completions", body)
        paged_status, answer = post(paged, "/v1/completions", body)
        assert dense_status == paged_status == 200
        assert answer["choices"][0]["text"] == dense["choices"][0]["text"]
        status, error = post(paged, "/v1/completions", {**body, "max_tokens": 80})
        assert status == 400 and "KV cache" in error["error"]["message"]
        results: list[int] = []
        threads = [threading.Thread(target=lambda: results.append(post(paged, "/v1/completions", body)[0]))
                   for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert set(results) <= {200, 429} and 429 in results and 200 in results
        assert post(paged, "/v1/completions", body)[0] == 200  # every block came back
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
