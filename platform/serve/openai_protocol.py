"""OpenAI request fields -> engine inputs, and engine outputs -> OpenAI response bodies."""
import json
import time
import uuid
from typing import Any

from llamaops.platform.tokenizer import (
    Message,
    Tokenizer,
    ToolCall,
    ToolDefinition,
    encode_dialog_for_generation,
    parse_assistant_message,
)

from .engine import RequestError
from .sampling import SamplingParams


def sampling_params(body: dict[str, Any], default_max_tokens: int) -> SamplingParams:
    stop = body.get("stop") or ()
    stop = (stop,) if isinstance(stop, str) else tuple(stop)
    try:
        return SamplingParams(
            max_tokens=int(body.get("max_completion_tokens") or body.get("max_tokens") or default_max_tokens),
            temperature=float(body.get("temperature", 1.0) if body.get("temperature") is not None else 1.0),
            top_p=float(body.get("top_p") if body.get("top_p") is not None else 1.0),
            top_k=int(body.get("top_k") or 0),
            stop=stop,
            seed=body.get("seed"),
        )
    except (TypeError, ValueError) as exc:
        raise RequestError(f"bad sampling parameter: {exc}") from None


def _tool(spec: dict[str, Any]) -> ToolDefinition:
    fn = spec.get("function") if isinstance(spec, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise RequestError("each tool needs {'type': 'function', 'function': {'name': ...}}")
    return ToolDefinition(fn["name"], fn.get("description", ""), fn.get("parameters") or {"type": "object", "properties": {}})


def _message(raw: dict[str, Any]) -> Message:
    if not isinstance(raw, dict) or raw.get("role") not in {"system", "user", "assistant", "tool", "ipython"}:
        raise RequestError("each message needs a role of system, user, assistant or tool")
    content = raw.get("content") or ""
    if isinstance(content, list):  # content parts: keep the text ones
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    calls = [
        ToolCall(c["function"]["name"], json.loads(c["function"].get("arguments") or "{}"), c.get("id", ""))
        for c in raw.get("tool_calls") or []
    ]
    role = "ipython" if raw["role"] == "tool" else raw["role"]
    return Message(role, content, calls)


def chat_prompt(body: dict[str, Any], tokenizer: Tokenizer) -> list[int]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty list")
    tools = [_tool(t) for t in body.get("tools") or []]
    try:
        return encode_dialog_for_generation([_message(m) for m in messages], tokenizer, tools=tools or None)
    except (KeyError, TypeError, ValueError) as exc:
        raise RequestError(f"bad messages: {exc}") from None


def completion_prompt(body: dict[str, Any], tokenizer: Tokenizer) -> list[int]:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
        return prompt
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise RequestError("'prompt' must be a string or a list of token ids")
    return tokenizer.encode(prompt, bos=True, eos=False)


def trim_at_stop(text: str, stop: tuple[str, ...]) -> str:
    cuts = [i for s in stop if (i := text.find(s)) >= 0]
    return text[: min(cuts)] if cuts else text


def openai_tool_calls(message: Message) -> list[dict[str, Any]]:
    return [
        {
            "id": f"call_{c.call_id or uuid.uuid4().hex}",
            "type": "function",
            "function": {"name": c.name, "arguments": json.dumps(c.arguments)},
        }
        for c in message.tool_calls
    ]


def chat_reply(text: str, finish_reason: str | None) -> tuple[dict[str, Any], str | None]:
    """The OpenAI assistant message for generated text: a Llama tool call becomes `tool_calls`."""
    message = parse_assistant_message(text)
    if not message.tool_calls:
        return {"role": "assistant", "content": text}, finish_reason
    reply = {"role": "assistant", "content": message.content or None, "tool_calls": openai_tool_calls(message)}
    return reply, "tool_calls"


def envelope(kind: str, model: str) -> dict[str, Any]:
    prefix = "chatcmpl" if kind == "chat.completion" else "cmpl"
    return {"id": f"{prefix}-{uuid.uuid4().hex}", "object": kind, "created": int(time.time()), "model": model}


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def error_body(message: str, kind: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}
