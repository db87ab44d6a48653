"""The OpenAI-compatible HTTP front of the engine (FastAPI).

Each request submits to the engine thread and waits on its event queue; streaming responses are
server-sent events. On shutdown new requests get 503 while in-flight ones finish.
"""
import asyncio
import hmac
import json
import time
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from llamaops.platform.tokenizer import Tokenizer

from . import openai_protocol as proto
from .engine import Engine, EngineFull, RequestError
from .metrics import Metrics


def _error(status: int, message: str, kind: str, code: str | None = None) -> JSONResponse:
    return JSONResponse(proto.error_body(message, kind, code), status_code=status)


def create_app(
    engine: Engine, tokenizer: Tokenizer, model_name: str, api_key: str | None = None, default_max_tokens: int = 256
) -> FastAPI:
    metrics = Metrics()
    state = {"ready": False, "draining": False}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        engine.start()
        state["ready"] = True
        yield
        state["draining"] = True
        await asyncio.to_thread(engine.stop)  # in-flight requests finish first

    app = FastAPI(title="llamaops", lifespan=lifespan)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        if request.url.path.startswith("/v1/"):
            if api_key is not None:
                given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
                if not hmac.compare_digest(given.encode(), api_key.encode()):
                    metrics.request(401)
                    return _error(401, "invalid or missing API key", "invalid_request_error", "invalid_api_key")
            if state["draining"]:
                metrics.request(503)
                return _error(503, "the server is shutting down", "server_error")
        response = await call_next(request)
        if request.url.path.startswith("/v1/"):
            metrics.request(response.status_code)
        return response

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/ready")
    async def ready():
        if not state["ready"] or state["draining"]:
            return _error(503, "not ready", "server_error")
        return {"status": "ready"}

    @app.get("/metrics")
    async def prometheus():
        return PlainTextResponse(metrics.render(engine.queue_depth, len(engine.rows)), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": 0, "owned_by": "llamaops"}]}

    async def _body(request: Request) -> dict[str, Any]:
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise RequestError("the request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise RequestError("the request body must be a JSON object")
        if body.get("model") not in (None, model_name):
            raise LookupError(f"model '{body.get('model')}' does not exist; this server serves '{model_name}'")
        return body

    async def _serve(request: Request, chat: bool):
        try:
            body = await _body(request)
            prompt = (proto.chat_prompt if chat else proto.completion_prompt)(body, tokenizer)
            params = proto.sampling_params(body, default_max_tokens)
            job = engine.submit(prompt, params)
        except RequestError as exc:
            return _error(400, str(exc), "invalid_request_error")
        except LookupError as exc:
            return _error(404, str(exc), "invalid_request_error", "model_not_found")
        except EngineFull as exc:
            return _error(429, str(exc), "rate_limit_error")
        started = time.monotonic()
        if body.get("stream"):
            return StreamingResponse(_stream(job, prompt, params, chat, started), media_type="text/event-stream")
        first = None
        while (token := await asyncio.to_thread(job.events.get)) is not None:
            first = first or time.monotonic() - started
        metrics.finished(len(prompt), len(job.tokens), first)
        return _final(job, prompt, params, chat)

    def _final(job, prompt, params, chat) -> dict[str, Any]:
        text = proto.trim_at_stop(tokenizer.decode(job.tokens), params.stop)
        out = proto.envelope("chat.completion" if chat else "text_completion", model_name)
        out["usage"] = proto.usage(len(prompt), len(job.tokens))
        if not chat:
            out["choices"] = [{"index": 0, "text": text, "logprobs": None, "finish_reason": job.finish_reason}]
            return out
        reply, finish = proto.chat_reply(text, job.finish_reason)
        out["choices"] = [{"index": 0, "message": reply, "logprobs": None, "finish_reason": finish}]
        return out

    async def _stream(job, prompt, params, chat, started):
        kind = "chat.completion.chunk" if chat else "text_completion"
        head = proto.envelope(kind, model_name)
        sent, first = "", None

        def chunk(delta: str | None, finish: str | None, extra: dict | None = None) -> str:
            if chat:
                choice = {"index": 0, "delta": extra or ({"content": delta} if delta is not None else {}), "finish_reason": finish}
            else:
                choice = {"index": 0, "text": delta or "", "logprobs": None, "finish_reason": finish}
            return f"data: {json.dumps({**head, 'choices': [choice]})}\n\n"

        if chat:
            yield chunk(None, None, {"role": "assistant", "content": ""})
        while (token := await asyncio.to_thread(job.events.get)) is not None:
            first = first or time.monotonic() - started
            text = proto.trim_at_stop(tokenizer.decode(list(job.tokens)), params.stop)
            if text.endswith("\ufffd"):
                continue  # an incomplete UTF-8 sequence: wait for the next token
            if len(text) > len(sent):
                yield chunk(text[len(sent) :], None)
                sent = text
        final = proto.trim_at_stop(tokenizer.decode(job.tokens), params.stop)
        if len(final) > len(sent):
            yield chunk(final[len(sent) :], None)
        metrics.finished(len(prompt), len(job.tokens), first)
        yield chunk(None, job.finish_reason)
        yield "data: [DONE]\n\n"

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await _serve(request, chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await _serve(request, chat=True)

    return app
