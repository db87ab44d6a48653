"""Start `llamaops serve` as a real process on a free 127.0.0.1 port and talk to it."""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from llamaops.platform.config.model import ModelConfig
from llamaops.platform.model import Transformer
from llamaops.platform.model.checkpoint import save_model

API_KEY = "test-key-not-secret"
READY_TIMEOUT_S = 120  # a tensor-parallel server starts a process per rank


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_dir: Path, tmp: Path, *extra: str, key: str | None = API_KEY):
    port = free_port()
    env = dict(os.environ, LLAMAOPS_API_KEY=key or "")
    log = open(tmp / f"server-{port}.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llamaops.cli.main", "serve", str(model_dir), "--port", str(port), "--name", "tiny", *extra],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/ready", timeout=1) as r:
                if r.status == 200:
                    return proc, base
        except (urllib.error.URLError, ConnectionError):
            pass
        if proc.poll() is not None:
            raise RuntimeError((tmp / f"server-{port}.log").read_text())
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"server did not become ready in {READY_TIMEOUT_S} s")


def post(base: str, path: str, body: bytes | dict, key: str | None = API_KEY) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(base + path, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def save_tiny_model(directory: Path, seed: int, n_layers: int = 2) -> Path:
    """A randomly initialised model with two key/value heads (so TP 2 splits them), saved."""
    cfg = ModelConfig(dim=64, n_layers=n_layers, n_heads=4, n_kv_heads=2, ffn_hidden_dim=128, max_seq_len=256)
    model = Transformer(cfg)
    model.init_weights(seed=seed)
    return save_model(model, directory)
