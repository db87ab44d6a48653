"""The OpenAI wire format: request schemas, their translation to engine requests, and response bodies."""
import json
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from llamaops.platform.tokenizer import Message, Tokenizer, ToolCall, ToolDefinition, parse_assistant_message
from llamaops.platform.tokenizer.chat_format import Role


class APIError(Exception):
    """An error the client caused or must handle: becomes an OpenAI-style error body."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = status, message, kind, param, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


# Stop strings are matched against the new text after every token: bounded, so one request's
# stops cannot cost the engine more than a small fraction of a step (OpenAI allows 4).
MAX_STOP_SEQUENCES = 16
MAX_STOP_CHARS = 256


# OpenAI knobs this server does not implement, with the value that means "off": any other value is
# refused (400) rather than silently ignored, so a client never trusts an answer it did not get.
UNSUPPORTED_OFF_VALUES: dict[str, tuple] = {
    "logprobs": (None, False, 0), "top_logprobs": (None, 0), "echo": (None, False), "best_of": (None, 1),
    "presence_penalty": (None, 0), "frequency_penalty": (None, 0), "logit_bias": (None, {}), "suffix": (None, ""),
    "response_format": (None, {"type": "text"}),
}


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")  # as OpenAI-compatible servers do: unknown knobs are not errors

    @model_validator(mode="before")
    @classmethod
    def _refuse_unsupported(cls, data):
        if isinstance(data, dict):
            for name, off in UNSUPPORTED_OFF_VALUES.items():
                if name in data and data[name] not in off:
                    raise ValueError(f"{name} is not supported by this server; leave it out")
        return data

    model: str
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    top_k: int = Field(default=0, ge=0)  # an extension (vLLM has it too)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    n: int = Field(default=1, ge=1, le=1)  # one choice per request; clients that want more send more requests

    @field_validator("stop")
    @classmethod
    def _bounded_stops(cls, value):
        stops = [value] if isinstance(value, str) else value or []
        if len(stops) > MAX_STOP_SEQUENCES:
            raise ValueError(f"at most {MAX_STOP_SEQUENCES} stop sequences, got {len(stops)}")
        longest = max((len(stop) for stop in stops), default=0)
        if longest > MAX_STOP_CHARS:
            raise ValueError(f"a stop sequence has {longest} characters; at most {MAX_STOP_CHARS}")
        return value

    @property
    def stop_sequences(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class CompletionRequest(_Request):
    prompt: str | list[int] | list[str]

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value):
        if isinstance(value, list) and value and isinstance(value[0], str):
            if len(value) != 1:
                raise ValueError("send one prompt per request")
            return value[0]
        return value


class ToolFunction(BaseModel):
    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class ToolSpec(BaseModel):
    type: Literal["function"] = "function"
    function: ToolFunction


class FunctionCall(BaseModel):
    name: str
    arguments: str = "{}"


class ToolCallSpec(BaseModel):
    id: str = ""
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[ToolCallSpec] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        parts = []
        for part in self.content:
            if part.get("type") != "text":
                raise ValueError(f"content parts of type '{part.get('type')}' are not supported; send text")
            parts.append(str(part.get("text", "")))
        return "".join(parts)


# OpenAI's message roles as Llama 3.1's: a developer message is a system prompt, a tool result ipython.
_ROLES: dict[str, Role] = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant",
                           "tool": "ipython"}


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(_Request):
    messages: list[ChatMessage] = Field(min_length=1)
    tools: list[ToolSpec] | None = None
    tool_choice: Any = None
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stream_options: StreamOptions | None = None

    def dialog(self) -> list[Message]:
        dialog = []
        for message in self.messages:
            role = _ROLES[message.role]
            calls = [
                ToolCall(call.function.name, _arguments(call.function.arguments), call_id=call.id)
                for call in message.tool_calls or []
            ]
            dialog.append(Message(role, message.text(), calls))
        return dialog

    def tool_definitions(self) -> list[ToolDefinition]:
        if self.tool_choice == "none":
            return []
        return [ToolDefinition(t.function.name, t.function.description, t.function.parameters) for t in self.tools or []]


def _arguments(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError:
        raise APIError(400, f"tool call arguments are not JSON: {text[:80]!r}", param="messages") from None
    if not isinstance(value, dict):
        raise APIError(400, "tool call arguments must be a JSON object", param="messages")
    return value


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def completion_body(rid: str, model: str, text: str, finish: str | None, prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "id": rid, "object": "text_completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def completion_chunk(rid: str, model: str, text: str, finish: str | None) -> dict:
    return {"id": rid, "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}]}


def assistant_reply(text: str, finish: str | None, with_tools: bool) -> tuple[dict[str, Any], str | None]:
    """The assistant message for generated text; a tool call becomes OpenAI `tool_calls`."""
    if with_tools:
        parsed = parse_assistant_message(text)
        if parsed.tool_calls:
            calls = [
                {"id": f"call_{c.call_id[:24]}", "type": "function",
                 "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
                for c in parsed.tool_calls
            ]
            return {"role": "assistant", "content": parsed.content or None, "tool_calls": calls}, "tool_calls"
    return {"role": "assistant", "content": text}, finish


def chat_body(rid: str, model: str, message: dict, finish: str | None, prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "id": rid, "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def chat_chunk(rid: str, model: str, delta: dict, finish: str | None, usage_: dict | None = None) -> dict:
    chunk = {"id": rid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}
    if usage_ is not None:
        chunk["choices"] = []
        chunk["usage"] = usage_
    return chunk


def encode_prompt(prompt: str | list[int], tokenizer: Tokenizer) -> list[int]:
    if isinstance(prompt, str):
        return tokenizer.encode(prompt, bos=True)
    if any(not 0 <= t < tokenizer.vocab_size for t in prompt):
        raise APIError(400, f"prompt token ids must be in [0, {tokenizer.vocab_size})", param="prompt")
    return list(prompt)
