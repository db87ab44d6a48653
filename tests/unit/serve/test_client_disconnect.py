"""A non-streaming client that hangs up frees its batch slot: its generation is cancelled, on a
real uvicorn server over loopback."""
import json
import socket
import threading
import time

import uvicorn

from llamaops.platform.serve import engine as engine_module
from llamaops.platform.serve.loading import LoadedModel
from llamaops.platform.serve.server import ServerSettings, create_app


def _wait(what, probe, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_hung_up_non_streaming_request_is_cancelled(small_model, monkeypatch):
    real_step = engine_module.Engine.step

    def slow_step(self):  # a model slow enough that 200 tokens outlast the hang-up
        time.sleep(0.02)
        real_step(self)

    monkeypatch.setattr(engine_module.Engine, "step", slow_step)
    app = create_app(lambda: LoadedModel(small_model, "tiny", "memory"), ServerSettings(max_batch=2))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        _wait("the model to load", lambda: app.state.serving.engine is not None)
        body = json.dumps({"model": "tiny", "prompt": "hi", "max_tokens": 200, "temperature": 0}).encode()
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            engine = app.state.serving.engine
            _wait("generation to start", lambda: engine.metrics.generated_tokens > 0)
        _wait("the request to be cancelled", lambda: engine.metrics.finish_reasons["cancelled"] == 1, 30)
        assert engine.metrics.generated_tokens < 200 and not engine.busy
    finally:
        server.should_exit = True
        thread.join(30)
