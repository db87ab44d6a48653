"""`llamaops serve --tensor-parallel 2` on a CPU: two processes over gloo, one model split by heads,
hidden units and vocabulary rows, driven by the official openai client against a one-process server
on the same weights."""
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from .servers import API_KEY, save_tiny_model, start_server

openai = pytest.importorskip("openai", reason="the openai client is in the test extra: scripts/install.sh --test")

PROMPTS = ["The capital of France is", "Once upon a time", "def fibonacci(n):"]
CHATS = [[{"role": "user", "content": "Hello!"}],
         [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}]]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny", seed=3)


def _serving(model_dir: Path, tmp: Path, *extra: str):
    proc, base = start_server(model_dir, tmp, "--max-batch", "4", *extra)
    return proc, openai.OpenAI(base_url=f"{base}/v1", api_key=API_KEY, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def one_process(model_dir, tmp_path_factory):
    proc, client = _serving(model_dir, tmp_path_factory.mktemp("tp1"))
    yield client
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def two_ranks(model_dir, tmp_path_factory):
    proc, client = _serving(model_dir, tmp_path_factory.mktemp("tp2"), "--tensor-parallel", "2")
    followers = _children(proc.pid)
    yield proc, followers, client
    if proc.poll() is None:
        proc.kill()


def _children(pid: int) -> list[int]:
    listed = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(child) for child in listed]


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


def _answers(client) -> list[str]:
    texts = []
    for prompt in PROMPTS:
        texts.append(client.completions.create(model="tiny", prompt=prompt, max_tokens=12, temperature=0).choices[0].text)
        stream = client.completions.create(model="tiny", prompt=prompt, max_tokens=12, temperature=0, stream=True)
        texts.append("".join(chunk.choices[0].text for chunk in stream if chunk.choices))
    for messages in CHATS:
        reply = client.chat.completions.create(model="tiny", messages=messages, max_tokens=12, temperature=0)
        texts.append(reply.choices[0].message.content)
        stream = client.chat.completions.create(model="tiny", messages=messages, max_tokens=12, temperature=0,
                                                stream=True)
        texts.append("".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices))
    texts.append(client.completions.create(model="tiny", prompt="Once", max_tokens=12, temperature=0.9, top_p=0.95,
                                           seed=11).choices[0].text)
    return texts


def test_two_ranks_answer_as_one_process_does(one_process, two_ranks):
    _, _, client = two_ranks
    expected = _answers(one_process)
    assert all(expected)
    assert _answers(client) == expected  # greedy and seeded, completions and chat, streamed and whole


def test_ranks_stay_in_step_through_concurrent_unseeded_and_abandoned_requests(one_process, two_ranks):
    _, _, client = two_ranks
    errors: list[BaseException] = []

    def unseeded() -> None:
        try:
            reply = client.completions.create(model="tiny", prompt="Tell me", max_tokens=16, temperature=1.0)
            assert reply.usage.completion_tokens >= 1
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def abandoned() -> None:
        try:
            stream = client.completions.create(model="tiny", prompt="A long story", max_tokens=200, stream=True)
            next(iter(stream))
            stream.close()  # the server cancels it mid-generation, on every rank at the same step
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=unseeded) for _ in range(4)] + [threading.Thread(target=abandoned) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    # Ranks that left step would now disagree (garbage or a hang); these still match one process.
    greedy = dict(model="tiny", prompt=PROMPTS[0], max_tokens=12, temperature=0)
    assert client.completions.create(**greedy).choices[0].text == one_process.completions.create(**greedy).choices[0].text


def test_a_split_the_model_cannot_take_is_one_line(model_dir):
    result = subprocess.run([sys.executable, "-m", "llamaops.cli.main", "serve", str(model_dir), "--tensor-parallel", "3"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: tensor parallel 3 does not divide the model's n_heads 4; choose a TP that divides it"]


@pytest.mark.skipif(sys.platform != "linux", reason="reads the follower processes from /proc")
def test_a_sigterm_stops_the_leader_and_its_followers(two_ranks):
    proc, followers, _ = two_ranks
    assert followers  # the follower rank (and multiprocessing's resource tracker)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) in (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after a clean drain
    deadline = time.monotonic() + 30  # the leader told them to stop before it left
    while [pid for pid in followers if _alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in followers if _alive(pid)]


def test_fp8_serving_runs_the_fp8_model_on_one_rank_and_on_two(tmp_path):
    """`--quantization fp8` serves exactly the model fp8.py defines (one rank: the same greedy tokens as
    the engine in this process over the same FP8 weights); two ranks serve it too (their w2 row
    scales are per shard, so not bit-identical to one rank)."""
    import torch

    from llamaops.platform.serve.engine import Engine
    from llamaops.platform.serve.sampling import SamplingParams
    from llamaops.platform.serve.tensor_parallel import TensorParallelGroup, load_tensor_parallel
    from llamaops.platform.tokenizer import load_tokenizer

    model_dir = save_tiny_model(tmp_path / "four-blocks", seed=5, n_layers=4)  # blocks 1 and 2 go to FP8
    prompt = load_tokenizer().encode("The capital of France is", bos=True)
    model, head = load_tensor_parallel(model_dir, TensorParallelGroup(0, 1, None), torch.device("cpu"), None, fp8=True)
    engine = Engine(model, load_tokenizer(), head=head)
    expected = engine.generate([prompt], SamplingParams(max_tokens=12, temperature=0))[0].text
    for extra in (("--quantization", "fp8"), ("--quantization", "fp8", "--tensor-parallel", "2")):
        proc, client = _serving(model_dir, tmp_path, *extra)
        try:
            text = client.completions.create(model="tiny", prompt=prompt, max_tokens=12, temperature=0).choices[0].text
            if "--tensor-parallel" not in extra:
                assert text == expected
            stream = client.chat.completions.create(model="tiny", messages=CHATS[0], max_tokens=8, stream=True)
            assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


@pytest.mark.skipif(sys.platform != "linux", reason="finds the follower process through /proc")
def test_a_follower_that_dies_stops_the_server_with_its_reason(model_dir, tmp_path):
    proc, _ = _serving(model_dir, tmp_path, "--tensor-parallel", "2")
    try:
        follower = next(pid for pid in _children(proc.pid)
                        if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text() and "resource_tracker" not in
                        Path(f"/proc/{pid}/cmdline").read_text())
        os.kill(follower, signal.SIGKILL)
        assert proc.wait(timeout=60) == 1  # the ranks cannot go on without it: the pod restarts whole
    finally:
        if proc.poll() is None:
            proc.kill()
    log = next(tmp_path.glob("server-*.log")).read_text()
    assert "tensor-parallel rank 1 exited with code -9" in log
