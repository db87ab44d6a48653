"""The OpenAI-compatible HTTP server around one `Engine` (FastAPI + uvicorn).

Requests run on the event loop; the engine runs on its own thread and hands outputs back with
`call_soon_threadsafe`. Load is shed at the engine's bounded queue (429), never by growing memory.
"""
import asyncio
import hmac
import json
import logging
import socket
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar, cast

from fastapi import FastAPI
from fastapi import Request as HTTPRequest
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from llamaops.platform.deploy.serving import GRACEFUL_DRAIN_S
from llamaops.platform.tokenizer import Tokenizer, encode_dialog_for_generation, load_tokenizer

from .engine import Engine, EngineClosed, Output, QueueFull, Request
from .loading import LoadedModel
from .openai_api import (
    APIError,
    ChatCompletionRequest,
    CompletionRequest,
    _Request,
    assistant_reply,
    chat_body,
    chat_chunk,
    completion_body,
    completion_chunk,
    encode_prompt,
    new_id,
)
from .sampling import SamplingParams

_RequestT = TypeVar("_RequestT", bound=_Request)
log = logging.getLogger("llamaops.serve")
DEFAULT_MAX_TOKENS = 256


@dataclass
class ServerSettings:
    max_batch: int = 32
    max_queue: int = 256
    prefill_chunk: int = 256
    max_prefills: int = 4
    kv_block_size: int | None = None  # paged KV blocks of this many tokens; None: dense rows
    kv_blocks: int | None = None
    max_seq_len: int | None = None
    api_key: str | None = None  # never logged
    max_body_bytes: int = 16 * 2**20  # a 128K-token prompt at PROMPT_CHARS_PER_TOKEN, in UTF-8, fits

    def engine_options(self) -> dict:
        """The engine's keyword arguments (every rank of a tensor-parallel server gets the same)."""
        return {"max_batch": self.max_batch, "max_queue": self.max_queue, "prefill_chunk": self.prefill_chunk,
                "max_prefills": self.max_prefills, "max_seq_len": self.max_seq_len,
                "kv_block_size": self.kv_block_size, "kv_blocks": self.kv_blocks}


# Prompt characters allowed per token of context, checked before tokenizing: a longer prompt cannot
# fit (Llama 3 tokens average ~4 characters of text) and would only tie up a tokenizer thread.
PROMPT_CHARS_PER_TOKEN = 32


class ServerState:
    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.model_name = ""
        self.tokenizer: Tokenizer | None = None
        self.load_error: str | None = None
        self.http: Counter[tuple[str, int]] = Counter()  # (route label, status) -> requests


def create_app(
    load: Callable[[], LoadedModel], settings: ServerSettings, on_load_failure: Callable[[], None] = lambda: None
) -> FastAPI:
    """`load` runs on a thread at startup, so /health answers while the weights load and /ready
    turns 200 only once the engine runs. A load that fails calls `on_load_failure`."""
    state = ServerState()

    def start_engine() -> None:
        try:
            loaded = load()
            tokenizer = load_tokenizer()
            engine = loaded.engine or Engine(loaded.model, tokenizer, **settings.engine_options())
            engine.start()
            state.tokenizer, state.model_name, state.engine = tokenizer, loaded.name, engine
            log.info("serving %s from %s", loaded.name, loaded.source)
        except Exception as exc:
            state.load_error = f"{type(exc).__name__}: {exc}"
            log.error("the model could not be loaded: %s", state.load_error)
            on_load_failure()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        threading.Thread(target=start_engine, name="llamaops-load", daemon=True).start()
        yield
        if state.engine is not None:  # uvicorn has let in-flight requests finish by now
            await asyncio.to_thread(state.engine.close, 60)

    app = FastAPI(title="llamaops", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.serving = state

    @app.middleware("http")
    async def count_and_authorize(request: HTTPRequest, call_next):
        route = request.url.path
        if settings.api_key and route.startswith("/v1/"):
            given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), settings.api_key.encode()):
                response = _error(APIError(401, "invalid or missing API key; send Authorization: Bearer KEY",
                                           "authentication_error", code="invalid_api_key"))
                state.http[(_route_label(route), 401)] += 1
                return response
        response = await call_next(request)
        state.http[(_route_label(route), response.status_code)] += 1
        return response

    @app.exception_handler(APIError)
    async def api_error(_: HTTPRequest, exc: APIError) -> JSONResponse:
        return _error(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: HTTPRequest, exc: StarletteHTTPException) -> JSONResponse:
        return _error(APIError(exc.status_code, str(exc.detail), "not_found_error" if exc.status_code == 404 else "invalid_request_error"))

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        if state.engine is None:
            reason = state.load_error or "the model is loading"
            return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)
        return JSONResponse({"status": "ready", "model": state.model_name})

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        engine = state.engine
        body = engine.metrics.render(state.model_name, state.http) if engine else ""
        return PlainTextResponse(body, media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def models() -> dict:
        engine, _ = _ready(state)
        return {"object": "list", "data": [{"id": state.model_name, "object": "model", "created": 0,
                                            "owned_by": "llamaops", "max_model_len": engine.max_seq_len}]}

    @app.post("/v1/completions")
    async def completions(http: HTTPRequest):
        body = await _parse(http, CompletionRequest, settings.max_body_bytes)
        engine, tokenizer = _ready(state)
        _check_model(body, state)
        if isinstance(body.prompt, str):
            _check_prompt_chars(len(body.prompt), engine)
        # Tokenizing a long prompt takes a while: off the event loop, so /health and streams go on.
        # CompletionRequest._one_prompt has replaced a one-string list by its string.
        prompt = await asyncio.to_thread(encode_prompt, cast("str | list[int]", body.prompt), tokenizer)
        params = _params(body, body.max_tokens, len(prompt), engine, stop_ids=frozenset({tokenizer.eos_id}))
        rid = new_id("cmpl")
        queue, request = _submit(engine, prompt, params)
        if body.stream:
            async def events():
                async for output in _outputs(queue, engine, request):
                    if _failed(output):
                        yield _sse(_generation_error(output).body())
                        break
                    yield _sse(completion_chunk(rid, state.model_name, output.text, _finish(output)))
                yield "data: [DONE]\n\n"
            return StreamingResponse(events(), media_type="text/event-stream")
        text, finish = await _collect(queue, engine, request, http)
        return completion_body(rid, state.model_name, text, finish, len(prompt), len(request.generated))

    @app.post("/v1/chat/completions")
    async def chat(http: HTTPRequest):
        body = await _parse(http, ChatCompletionRequest, settings.max_body_bytes)
        engine, tokenizer = _ready(state)
        _check_model(body, state)
        tools = body.tool_definitions()
        dialog = body.dialog()
        _check_prompt_chars(sum(len(message.content) for message in dialog), engine)
        try:
            prompt = await asyncio.to_thread(encode_dialog_for_generation, dialog, tokenizer, tools or None)
        except ValueError as exc:
            raise APIError(400, str(exc), param="messages") from None
        params = _params(body, body.max_completion_tokens or body.max_tokens, len(prompt), engine,
                         stop_ids=tokenizer.stop_ids)
        rid = new_id("chatcmpl")
        queue, request = _submit(engine, prompt, params)
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)

            async def events():
                yield _sse(chat_chunk(rid, state.model_name, {"role": "assistant", "content": ""}, None))
                held = []  # with tools, the answer may be a call: it is sent whole at the end
                async for output in _outputs(queue, engine, request):
                    if _failed(output):
                        yield _sse(_generation_error(output).body())
                        break
                    if tools:
                        held.append(output.text)
                        if output.finish_reason is None:
                            continue
                        message, finish = assistant_reply("".join(held), _finish(output), True)
                        delta = {k: v for k, v in message.items() if k != "role"}
                        if delta.get("tool_calls"):
                            delta["tool_calls"] = [dict(c, index=i) for i, c in enumerate(delta["tool_calls"])]
                        yield _sse(chat_chunk(rid, state.model_name, delta, finish))
                    else:
                        delta = {"content": output.text} if output.text else {}
                        yield _sse(chat_chunk(rid, state.model_name, delta, _finish(output)))
                if include_usage:
                    yield _sse(chat_chunk(rid, state.model_name, {}, None,
                                          {"prompt_tokens": len(prompt), "completion_tokens": len(request.generated),
                                           "total_tokens": len(prompt) + len(request.generated)}))
                yield "data: [DONE]\n\n"
            return StreamingResponse(events(), media_type="text/event-stream")
        text, finish = await _collect(queue, engine, request, http)
        message, finish = assistant_reply(text, finish, bool(tools))
        return chat_body(rid, state.model_name, message, finish, len(prompt), len(request.generated))

    return app


_ROUTES = {"/health", "/ready", "/metrics", "/v1/models", "/v1/completions", "/v1/chat/completions"}


def _route_label(path: str) -> str:
    """The metrics label of a request path: one of the served routes or "other", so a client
    cannot add label values (each a new time series) by asking for new paths."""
    return path if path in _ROUTES else "other"


async def _body(http: HTTPRequest, limit: int) -> bytes:
    """The request body, refused (413) as soon as it is known to exceed `limit` bytes."""
    too_large = APIError(413, f"the request body is larger than {limit} bytes", code="request_too_large")
    declared = http.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in http.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _check_prompt_chars(chars: int, engine: Engine) -> None:
    limit = engine.max_seq_len * PROMPT_CHARS_PER_TOKEN
    if chars > limit:
        raise APIError(400, f"the prompt has {chars} characters: more than fit the context of {engine.max_seq_len} "
                            f"tokens (at most {limit} characters); shorten it", code="context_length_exceeded")


async def _parse(http: HTTPRequest, schema: type[_RequestT], max_bytes: int) -> _RequestT:
    """The JSON body as `schema` (whatever the Content-Type says, as curl users expect)."""
    try:
        data = json.loads(await _body(http, max_bytes))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise APIError(400, "the request body is not valid JSON") from None
    except RecursionError:
        raise APIError(400, "the request body nests JSON too deeply") from None
    try:  # "\ud800" is valid JSON but not text: it would fail every later encode (replies, logs)
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise APIError(400, "the request body holds an unpaired UTF-16 surrogate escape, which is not text") from None
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = str(first.get("msg", "")).removeprefix("Value error, ")
        raise APIError(400, f"{where or 'body'}: {message}", param=where or None) from None


def _error(exc: APIError) -> JSONResponse:
    headers = {"Retry-After": "1"} if exc.status in (429, 503) else None
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


def _ready(state: ServerState) -> tuple[Engine, Tokenizer]:
    """The running engine and its tokenizer; 503 while the model loads or after it failed to."""
    engine = state.engine
    if engine is None:
        raise APIError(503, f"not ready: {state.load_error or 'the model is loading'}", "service_unavailable")
    tokenizer = state.tokenizer
    assert tokenizer is not None  # start_engine sets it before the engine
    return engine, tokenizer


def _check_model(body: _Request, state: ServerState) -> None:
    if body.model != state.model_name:
        raise APIError(404, f"model '{body.model}' is not served here; this server serves '{state.model_name}'",
                       "not_found_error", param="model", code="model_not_found")


def _params(body: _Request, max_tokens: int | None, prompt_tokens: int, engine: Engine, stop_ids) -> SamplingParams:
    room = engine.max_seq_len - prompt_tokens
    if room < 1:
        raise APIError(400, f"the prompt has {prompt_tokens} tokens; this model's context is {engine.max_seq_len} tokens",
                       param="messages" if isinstance(body, ChatCompletionRequest) else "prompt",
                       code="context_length_exceeded")
    if max_tokens is not None and max_tokens > room:
        raise APIError(400, f"max_tokens {max_tokens} is too large: the prompt has {prompt_tokens} tokens and the "
                       f"context is {engine.max_seq_len}; use at most {room}", param="max_tokens",
                       code="context_length_exceeded")
    return SamplingParams(max_tokens=max_tokens or min(DEFAULT_MAX_TOKENS, room), temperature=body.temperature,
                          top_p=body.top_p, top_k=body.top_k, stop=body.stop_sequences, seed=body.seed,
                          stop_ids=frozenset(stop_ids))


def _submit(engine: Engine, prompt: list[int], params: SamplingParams) -> tuple[asyncio.Queue, Request]:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Output] = asyncio.Queue()

    def on_output(out: Output) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, out)

    request = Request(prompt, params, on_output=on_output)
    try:
        engine.submit(request)
    except QueueFull as exc:
        raise APIError(429, f"the server is at capacity ({exc})", "rate_limit_error", code="queue_full") from None
    except EngineClosed as exc:
        raise APIError(503, str(exc), "service_unavailable") from None
    except ValueError as exc:
        raise APIError(400, str(exc), code="context_length_exceeded") from None
    return queue, request


async def _outputs(queue: asyncio.Queue, engine: Engine, request: Request) -> AsyncIterator[Output]:
    try:
        while True:
            output = await queue.get()
            yield output
            if output.finish_reason is not None:
                return
    finally:  # the client went away (or we are done): free the batch slot
        if request.finish_reason is None:
            engine.cancel(request)


async def _cancel_on_disconnect(http: HTTPRequest, engine: Engine, request: Request) -> None:
    """A non-streaming client that hangs up stops its generation (a stream notices on its next write).
    With the body read, the next ASGI message is the disconnect: wait for it, cancelled when done."""
    while (await http.receive())["type"] != "http.disconnect":
        pass
    engine.cancel(request)


async def _collect(queue: asyncio.Queue, engine: Engine, request: Request,
                   http: HTTPRequest) -> tuple[str, str | None]:
    parts, finish = [], None
    watcher = asyncio.create_task(_cancel_on_disconnect(http, engine, request))
    try:
        async for output in _outputs(queue, engine, request):
            parts.append(output.text)
            finish = output.finish_reason
    finally:
        watcher.cancel()
    if _failed(Output("", None, finish)):
        raise _generation_error(Output("", None, finish))
    return "".join(parts), _finish(Output("", None, finish))


def _failed(output: Output) -> bool:
    return bool(output.finish_reason and output.finish_reason.startswith("error"))


def _generation_error(output: Output) -> APIError:
    """What a client whose generation failed gets: the error body (an SSE event when streaming),
    never a finish_reason that looks like a normal end."""
    return APIError(500, f"generation failed: {output.finish_reason}", "server_error")


def _finish(output: Output) -> str | None:
    reason = output.finish_reason
    return None if reason is None else ("length" if reason == "length" else "stop")


def _sse(payload: dict) -> str:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"


class ServeError(ValueError):
    """The server could not start serving (the model failed to load)."""


def run_server(load: Callable[[], LoadedModel], settings: ServerSettings, host: str, port: int) -> None:
    import uvicorn

    server: uvicorn.Server | None = None

    def stop() -> None:
        assert server is not None  # the model loads (and fails) only once the server runs
        server.should_exit = True

    # The socket first: a busy port is one line before any model loads (uvicorn would exit with the
    # loading thread still running and the interpreter aborting under it).
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; pick another --port or --host") from None
    app = create_app(load, settings, on_load_failure=stop)
    # SIGTERM: stop accepting, let in-flight requests finish (up to 60 s), then stop the engine.
    config = uvicorn.Config(app, host=host, port=port, log_level="info", access_log=False, timeout_graceful_shutdown=GRACEFUL_DRAIN_S)
    server = uvicorn.Server(config)
    server.run(sockets=[listener])
    error = app.state.serving.load_error
    if error:
        raise ServeError(error.split(": ", 1)[-1])
