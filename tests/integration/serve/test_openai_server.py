"""The real `llamaops serve` subprocess on a free 127.0.0.1 port, driven by the official openai client."""
import json
import os
import subprocess
import sys
import urllib.request

import httpx
import openai
import pytest
import torch

from llamaops.platform.config.model import ModelConfig
from llamaops.platform.model import Transformer
from llamaops.platform.model.checkpoint import save_model

from ..conftest import _free_port, _stop, _wait_until

pytestmark = pytest.mark.slow
KEY = "sekret-key"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    cfg = ModelConfig(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_hidden_dim=64, vocab_size=128256, max_seq_len=512, rope_scaling=None)
    model = Transformer(cfg)
    model.init_weights(seed=0)
    save_model(model, tmp / "model")
    (tmp / "key").write_text(KEY + "\n")
    port, log = _free_port(), tmp / "server.log"
    command = [sys.executable, "-m", "llamaops.cli.main", "serve", str(tmp / "model"), "--port", str(port),
               "--api-key-file", str(tmp / "key"), "--served-model-name", "tiny", "--max-batch", "4",
               "--max-queue", "8", "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return urllib.request.urlopen(base + "/ready", timeout=2).status == 200
        except OSError:
            return False

    _wait_until(ready, process, log, timeout_s=120)
    yield base, process
    _stop(process)


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server[0] + "/v1", api_key=KEY, max_retries=0)


def test_models_and_greedy_completion_with_usage(client):
    assert [m.id for m in client.models.list()] == ["tiny"]
    a = client.completions.create(model="tiny", prompt="Hello there", max_tokens=7, temperature=0)
    b = client.completions.create(model="tiny", prompt="Hello there", max_tokens=7, temperature=0)
    assert a.choices[0].text == b.choices[0].text and a.choices[0].finish_reason in {"length", "stop"}
    assert a.usage.prompt_tokens == 3 and 1 <= a.usage.completion_tokens <= 7


def test_chat_streaming_equals_non_streaming(client):
    messages = [{"role": "user", "content": "Say something"}]
    whole = client.chat.completions.create(model="tiny", messages=messages, max_tokens=12, temperature=0, seed=1)
    parts = client.chat.completions.create(model="tiny", messages=messages, max_tokens=12, temperature=0, stream=True)
    streamed = "".join(c.choices[0].delta.content or "" for c in parts if c.choices)
    assert streamed == whole.choices[0].message.content
    assert whole.usage.completion_tokens <= 12


def test_seeded_sampling_repeats(client):
    kwargs = dict(model="tiny", prompt="abc", max_tokens=8, temperature=1.0, seed=42)
    assert client.completions.create(**kwargs).choices[0].text == client.completions.create(**kwargs).choices[0].text


def test_errors_are_openai_shaped(server, client):
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server[0] + "/v1", api_key="wrong", max_retries=0).models.list()
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.completions.create(model="other", prompt="x", max_tokens=2)
    with pytest.raises(openai.BadRequestError, match="exceeds the context length"):
        client.completions.create(model="tiny", prompt="x", max_tokens=5000)
    response = httpx.post(server[0] + "/v1/completions", content=b"{not json", headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]["message"]


def test_metrics_are_prometheus_text(server, client):
    client.completions.create(model="tiny", prompt="count me", max_tokens=3, temperature=0)
    text = urllib.request.urlopen(server[0] + "/metrics").read().decode()
    assert 'llamaops_requests_total{status="200"}' in text and "llamaops_queue_depth 0" in text
    generated = next(line for line in text.splitlines() if line.startswith("llamaops_generation_tokens_total"))
    assert int(generated.split()[1]) >= 3
    assert json.loads(urllib.request.urlopen(server[0] + "/health").read())["status"] == "ok"
