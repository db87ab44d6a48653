"""Bounds on what one request may cost before the engine sees it: body size, prompt characters,
stop strings."""
import threading

import pytest
from fastapi.testclient import TestClient

from llamaops.platform.serve.loading import LoadedModel
from llamaops.platform.serve.openai_api import MAX_STOP_CHARS, MAX_STOP_SEQUENCES
from llamaops.platform.serve.server import PROMPT_CHARS_PER_TOKEN, ServerSettings, create_app
from llamaops.platform.serve.text import IncrementalText


@pytest.fixture
def client(small_model):
    settings = ServerSettings(max_batch=2, max_body_bytes=64 * 1024)
    with TestClient(create_app(lambda: LoadedModel(small_model, "tiny", "memory"), settings)) as client:
        for _ in range(600):
            if client.get("/ready").status_code == 200:
                break
            threading.Event().wait(0.05)
        yield client


def test_a_body_over_the_limit_gets_413_and_the_server_goes_on(client):
    big = {"model": "tiny", "prompt": "x" * 70_000, "max_tokens": 1}
    response = client.post("/v1/completions", json=big)
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"
    assert client.get("/health").status_code == 200
    assert client.post("/v1/completions", json={"model": "tiny", "prompt": "hi", "max_tokens": 2}).status_code == 200


@pytest.mark.parametrize("route, body", [
    ("/v1/completions", lambda text: {"prompt": text}),
    ("/v1/chat/completions", lambda text: {"messages": [{"role": "user", "content": text}]}),
])
def test_a_prompt_longer_than_the_context_can_hold_is_refused_before_tokenizing(client, small_model, route, body):
    chars = small_model.cfg.max_seq_len * PROMPT_CHARS_PER_TOKEN + 1
    response = client.post(route, json={"model": "tiny", "max_tokens": 1, **body("ab " * (chars // 3 + 1))})
    assert response.status_code == 400 and "characters" in response.json()["error"]["message"]


@pytest.mark.parametrize("stop, message", [
    (["s"] * (MAX_STOP_SEQUENCES + 1), f"at most {MAX_STOP_SEQUENCES} stop sequences"),
    ("x" * (MAX_STOP_CHARS + 1), f"at most {MAX_STOP_CHARS}"),
])
def test_too_many_or_too_long_stop_strings_get_400(client, stop, message):
    response = client.post("/v1/completions", json={"model": "tiny", "prompt": "hi", "max_tokens": 2, "stop": stop})
    assert response.status_code == 400 and message in response.json()["error"]["message"]


def test_stop_matching_reads_only_the_tail_yet_finds_a_stop_split_over_tokens(tokenizer, monkeypatch):
    text = "word " * 2000 + "the end marker. more"
    ids = tokenizer.encode(text, bos=False)
    searched = []
    real_find = str.find

    class Counting(str):
        def find(self, sub, start=0, *rest):
            searched.append(len(self) - start)
            return real_find(self, sub, start, *rest)

    monkeypatch.setattr(tokenizer, "decode", lambda tokens, decode=tokenizer.decode: Counting(decode(tokens)))
    inc = IncrementalText(tokenizer, ["end marker", "never appears"])
    released = "".join(inc.add(i) for i in ids if not inc.stopped) + inc.finish()
    assert released == "word " * 2000 + "the " and inc.stopped
    assert max(searched) < 64  # each search covers the unreleased tail, not the whole 10,000-character text
