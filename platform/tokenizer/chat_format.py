"""The Llama 3.1 dialog format: render, tokenize (with a training mask) and parse messages.

A dialog is `<|begin_of_text|>` then, per message,
`<|start_header_id|>{role}<|end_header_id|>\\n\\n{body}<|eot_id|>` (or `<|eom_id|>` for an assistant
message that waits for a tool result). When tools are given, the system message (synthesized if
absent) starts with `Environment: ipython`, the `Tools:` line of the built-in search tools, the
knowledge/today dates and, for custom tools, the JSON-call instruction with one JSON schema per
tool. Custom tools go in the system prompt, not in the first user message, so user turns stay
verbatim and multi-turn dialogs need no rewriting.

Assistant tool calls: built-in ones as `<|python_tag|>brave_search.call(query="...")`, the code
interpreter as `<|python_tag|>{code}`, custom ones as `{"name": ..., "parameters": {...}}`
(after `<|python_tag|>` only when text precedes the call, so the parser can find the split).

Message contents are always tokenized as plain text: a special-token string typed by a user
never becomes a control token.
"""
import ast
import datetime
import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .tokenizer import Tokenizer

Role = Literal["system", "user", "assistant", "ipython"]
StopReason = Literal["eot", "eom"]
ROLES: tuple[str, ...] = ("system", "user", "assistant", "ipython")
BUILTIN_TOOLS: tuple[str, ...] = ("brave_search", "wolfram_alpha", "code_interpreter")
KNOWLEDGE_CUTOFF = "December 2023"
CUSTOM_TOOLS_INSTRUCTION = (
    "You have access to the following functions. To call a function, please respond with JSON for a function call. "
    'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}. '
    "Do not use variables."
)

_STOP_TOKENS = {"<|eot_id|>": "eot", "<|eom_id|>": "eom", "<|end_of_text|>": "eot"}
_ASSISTANT_HEADER = "<|start_header_id|>assistant<|end_header_id|>\n\n"
_BUILTIN_CALL = re.compile(r"\s*(\w+)\.call\((.*)\)\s*", re.DOTALL)
_JSON_NAMES = {"true": True, "false": False, "null": None}


@dataclass
class ToolCall:
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    # Not part of the prompt text, so not part of equality either.
    call_id: str = field(default="", compare=False)


@dataclass
class ToolDefinition:
    """A custom tool: its name, what it does, and the JSON schema of its parameters."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


Tool = ToolDefinition | str  # a str names a built-in tool


@dataclass
class Message:
    """One turn. stop_reason None renders as eom after a tool call, else eot; parsing returns None
    for a generation that stopped without a stop token."""

    role: Role
    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    stop_reason: StopReason | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}; expected one of {ROLES}")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only assistant messages carry tool calls")
        if len(self.tool_calls) > 1:
            raise ValueError("Llama 3.1 makes at most one tool call per message")
        if self.stop_reason not in (None, "eot", "eom"):
            raise ValueError(f"unknown stop reason {self.stop_reason!r}")
        if self.stop_reason and self.role != "assistant":
            raise ValueError("only assistant messages have a stop reason (other turns end with <|eot_id|>)")


@dataclass(frozen=True)
class _Piece:
    text: str
    special: bool = False
    trained: bool = False


def format_date(day: datetime.date) -> str:
    return day.strftime("%d %B %Y")


def render_tool_call(call: ToolCall) -> str:
    """The text of a call, without <|python_tag|>."""
    if call.name == "code_interpreter":
        return str(call.arguments.get("code", ""))
    if call.name in BUILTIN_TOOLS:
        args = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in call.arguments.items())
        return f"{call.name}.call({args})"
    return json.dumps({"name": call.name, "parameters": call.arguments}, ensure_ascii=False)


def _system_text(content: str, tools: Sequence[Tool], today: datetime.date | None) -> str:
    if not tools:
        return content
    builtin = [t for t in tools if isinstance(t, str)]
    if unknown := set(builtin) - set(BUILTIN_TOOLS):
        raise ValueError(f"unknown built-in tools {sorted(unknown)}; expected some of {BUILTIN_TOOLS}")
    lines = ["Environment: ipython"]
    if searches := [t for t in builtin if t != "code_interpreter"]:
        lines.append("Tools: " + ", ".join(searches))
    lines.append(f"Cutting Knowledge Date: {KNOWLEDGE_CUTOFF}")
    lines.append(f"Today Date: {format_date(today or datetime.date.today())}")
    text = "\n".join(lines) + "\n\n"
    if custom := [t for t in tools if isinstance(t, ToolDefinition)]:
        text += CUSTOM_TOOLS_INSTRUCTION + "\n\n"
        text += "".join(json.dumps(t.to_json(), indent=4, ensure_ascii=False) + "\n\n" for t in custom)
    return text + content


def _header(role: str) -> list[_Piece]:
    return [
        _Piece("<|start_header_id|>", special=True),
        _Piece(role),
        _Piece("<|end_header_id|>", special=True),
        _Piece("\n\n"),
    ]


def _message_pieces(message: Message, body: str) -> list[_Piece]:
    trained = message.role == "assistant"
    pieces = _header(message.role)
    if body:
        pieces.append(_Piece(body, trained=trained))
    if message.tool_calls:
        call = message.tool_calls[0]
        builtin = call.name in BUILTIN_TOOLS
        if builtin or body:
            pieces.append(_Piece("<|python_tag|>", special=True, trained=trained))
        pieces.append(_Piece(render_tool_call(call), trained=trained))
    stop = message.stop_reason or ("eom" if message.tool_calls else "eot")  # only assistants may end with eom
    pieces.append(_Piece(f"<|{stop}_id|>", special=True, trained=trained))
    return pieces


def _dialog_pieces(
    messages: Sequence[Message], tools: Sequence[Tool] | None, today: datetime.date | None, add_generation_prompt: bool
) -> list[_Piece]:
    pieces = [_Piece("<|begin_of_text|>", special=True)]
    rest = list(messages)
    if tools or (rest and rest[0].role == "system"):
        system = rest.pop(0) if rest and rest[0].role == "system" else Message("system")
        pieces += _message_pieces(system, _system_text(system.content, tools or (), today))
    for message in rest:
        pieces += _message_pieces(message, message.content)
    if add_generation_prompt:
        pieces += _header("assistant")
    return pieces


def render_dialog(
    messages: Sequence[Message],
    *,
    tools: Sequence[Tool] | None = None,
    today: datetime.date | None = None,
    add_generation_prompt: bool = False,
) -> str:
    """The dialog as prompt text, exactly what chat_template.CHAT_TEMPLATE renders."""
    return "".join(p.text for p in _dialog_pieces(messages, tools, today, add_generation_prompt))


def _encode(pieces: list[_Piece], tokenizer: Tokenizer) -> tuple[list[int], list[bool]]:
    ids: list[int] = []
    mask: list[bool] = []
    for piece in pieces:
        piece_ids = [tokenizer.special_tokens[piece.text]] if piece.special else tokenizer.encode(piece.text)
        ids += piece_ids
        mask += [piece.trained] * len(piece_ids)
    return ids, mask


def encode_dialog_for_training(
    messages: Sequence[Message],
    tokenizer: Tokenizer,
    *,
    tools: Sequence[Tool] | None = None,
    today: datetime.date | None = None,
) -> tuple[list[int], list[bool]]:
    """Token ids of the dialog and a mask that is True exactly on what the model must learn to
    produce: assistant bodies (text, <|python_tag|>, tool calls) and their closing <|eot_id|>/<|eom_id|>."""
    return _encode(_dialog_pieces(messages, tools, today, add_generation_prompt=False), tokenizer)


def encode_dialog_for_generation(
    messages: Sequence[Message],
    tokenizer: Tokenizer,
    tools: Sequence[Tool] | None = None,
    *,
    today: datetime.date | None = None,
) -> list[int]:
    """Token ids of the dialog followed by an open assistant header for the model to complete."""
    return _encode(_dialog_pieces(messages, tools, today, add_generation_prompt=True), tokenizer)[0]


def _literal(node: ast.expr) -> Any:
    if isinstance(node, ast.Name) and node.id in _JSON_NAMES:
        return _JSON_NAMES[node.id]
    return ast.literal_eval(node)


def _parse_builtin_call(text: str) -> ToolCall | None:
    match = _BUILTIN_CALL.fullmatch(text)
    if not match or match.group(1) not in BUILTIN_TOOLS:
        return None
    try:
        call = ast.parse(f"f({match.group(2)})", mode="eval").body
        if not isinstance(call, ast.Call) or call.args or any(kw.arg is None for kw in call.keywords):
            return None
        return ToolCall(match.group(1), {str(kw.arg): _literal(kw.value) for kw in call.keywords})
    except (SyntaxError, ValueError):
        return None


def _parse_json_call(text: str) -> ToolCall | None:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    arguments = obj.get("parameters", obj.get("arguments", {}))
    return ToolCall(obj["name"], arguments) if isinstance(arguments, dict) else None


def _split_stop(text: str) -> tuple[str, StopReason | None]:
    hits = [(i, token) for token in _STOP_TOKENS if (i := text.find(token)) >= 0]
    if not hits:
        return text, None
    i, token = min(hits)
    return text[:i], _STOP_TOKENS[token]  # type: ignore[return-value]


def parse_assistant_message(generated: Sequence[int] | str, tokenizer: Tokenizer | None = None) -> Message:
    """The assistant message in generated token ids (needs tokenizer) or text, up to the first stop token.

    Recognizes built-in calls and code after <|python_tag|>, and custom JSON calls with or without it.
    """
    if isinstance(generated, str):
        body, stop = _split_stop(generated)
    else:
        if tokenizer is None:
            raise ValueError("parsing token ids needs the tokenizer")
        ids = list(generated)
        end = next((i for i, t in enumerate(ids) if t in tokenizer.stop_ids), None)
        stop = None if end is None else ("eom" if ids[end] == tokenizer.eom_id else "eot")
        body = tokenizer.decode(ids[:end])
    body = body.removeprefix(_ASSISTANT_HEADER)

    content, tag, call_text = body.partition("<|python_tag|>")
    if tag:
        call = _parse_builtin_call(call_text) or _parse_json_call(call_text)
        call = call or ToolCall("code_interpreter", {"code": call_text})
    elif call := _parse_json_call(body) or _parse_builtin_call(body):
        content = ""
    else:
        return Message("assistant", body, [], stop)
    call.call_id = uuid.uuid4().hex
    return Message("assistant", content, [call], stop)
