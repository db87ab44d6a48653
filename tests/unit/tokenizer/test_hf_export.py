import datetime
import json
import sysconfig
from pathlib import Path

import pytest

from llamaops.platform.tokenizer import (
    Message,
    Tokenizer,
    ToolCall,
    ToolDefinition,
    encode_dialog_for_training,
    load_tokenizer,
    render_dialog,
    write_hf_tokenizer_files,
)
from llamaops.platform.tokenizer.chat_format import format_date

STDLIB_FILES = ["textwrap.py", "json/decoder.py", "difflib.py", "string.py", "email/_header_value_parser.py"]
SCRIPTS = [
    "Grüße aus München! Die Straße ist naß, Äpfel kosten 3,50 €.",
    "नमस्ते दुनिया, यह एक परीक्षण वाक्य है। १२३४",
    "สวัสดีชาวโลก ภาษาไทยเขียนติดกันโดยไม่มีช่องว่าง",
    "你好，世界！我们今天去北京。人工智能很有趣。",
    "こんにちは、世界。カタカナとひらがな。",
    "Привет, мир! Ёжик в тумане.",
    "مرحبا بالعالم — שלום עולם",
    "👋🌍🎉 👨‍👩‍👧‍👦 🏳️‍🌈 🇩🇪🇹🇭 ✅",
    "tabs\t\t\tand   spaces    \n\n\n\n   \r\n\r\n\u00a0\u2003\u3000 mixed",
    " " * 500 + "x" + "\n" * 300 + "y\t\t",
    "I'M sure THEY'LL say it's 1234567890 o'clock.",
    "<|eot_id|> plain text that looks special",
]
DAY = datetime.date(2024, 9, 21)
WEATHER = ToolDefinition(
    "get_weather",
    "Current weather in a city",
    {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["C", "F"]}}, "required": ["city"]},
)
PLAIN_DIALOG = [
    Message("system", "You are a helpful assistant."),
    Message("user", "Wer bist du?"),
    Message("assistant", "Ich bin Llama. 😊"),
    Message("user", "Thanks!"),
]
TOOL_DIALOG = [
    Message("system", "Answer briefly."),
    Message("user", "Weather in Zürich, and the gold price?"),
    Message("assistant", tool_calls=[ToolCall("get_weather", {"city": "Zürich", "unit": "C"})]),
    Message("ipython", '{"temperature": 21}'),
    Message("assistant", "Now the price.", [ToolCall("brave_search", {"query": 'gold "spot" price'})]),
    Message("ipython", "2650 USD/oz"),
    Message("assistant", tool_calls=[ToolCall("code_interpreter", {"code": "print(21 * 9 / 5 + 32)"})]),
    Message("ipython", "69.8"),
    Message("assistant", "21 °C (69.8 °F); gold is 2650 USD/oz."),
]
TOOLS = ["brave_search", "wolfram_alpha", "code_interpreter", WEATHER]


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return load_tokenizer()


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("hf_tokenizer")
    paths = write_hf_tokenizer_files(directory)
    assert [p.name for p in paths] == ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]
    return directory


@pytest.fixture(scope="module")
def hf(export_dir: Path):
    from tokenizers import Tokenizer as HFTokenizer

    return HFTokenizer.from_file(str(export_dir / "tokenizer.json"))


@pytest.fixture(scope="module")
def fast(export_dir: Path):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(export_dir)


def corpus() -> list[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return [(stdlib / name).read_text(encoding="utf-8") for name in STDLIB_FILES] + SCRIPTS


def as_hf_message(message: Message) -> dict:
    out: dict = {"role": message.role, "content": message.content}
    if message.tool_calls:
        out["tool_calls"] = [
            {"type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in message.tool_calls
        ]
    if message.stop_reason:
        out["stop_reason"] = message.stop_reason
    return out


def test_same_ids_as_tiktoken(tok: Tokenizer, hf):
    for text in corpus():
        ids = tok.encode(text, allowed_special="all")  # Hugging Face always parses special-token strings
        assert hf.encode(text, add_special_tokens=False).ids == ids
        assert hf.decode(ids, skip_special_tokens=False) == text


def test_special_tokens_and_bos(tok: Tokenizer, hf):
    assert hf.get_vocab_size() == tok.vocab_size == 128256
    for token, token_id in tok.special_tokens.items():
        assert hf.token_to_id(token) == token_id
    assert hf.encode("Hello world!").ids == [128000, 9906, 1917, 0]
    assert hf.encode("<|eot_id|>", add_special_tokens=False).ids == [128009]
    assert hf.decode([128000, 9906, 128009], skip_special_tokens=True) == "Hello"


def test_tokenizer_json_model(export_dir: Path):
    model = json.loads((export_dir / "tokenizer.json").read_text(encoding="utf-8"))["model"]
    assert (model["type"], model["ignore_merges"], len(model["vocab"])) == ("BPE", True, 128000)
    assert len(model["merges"]) == 280147  # as in Meta's own Hugging Face release
    assert model["vocab"]["Hello"] == 9906 and model["vocab"]["Ġworld"] == 1917


def test_config_files(export_dir: Path):
    config = json.loads((export_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert (config["bos_token"], config["eos_token"], config["pad_token"]) == (
        "<|begin_of_text|>",
        "<|eot_id|>",
        "<|finetune_right_pad_id|>",
    )
    assert config["model_max_length"] == 131072
    assert "chat_template" in config
    special = json.loads((export_dir / "special_tokens_map.json").read_text(encoding="utf-8"))
    assert special["bos_token"] == "<|begin_of_text|>"


def test_transformers_loads_it(tok: Tokenizer, fast):
    assert (fast.bos_token_id, fast.eos_token_id, fast.pad_token_id) == (128000, 128009, 128004)
    assert fast("Hello world!").input_ids == [128000, 9906, 1917, 0]
    for text in SCRIPTS:
        ids = fast(text, add_special_tokens=False).input_ids
        assert ids == tok.encode(text, allowed_special="all")
        assert fast.decode(ids) == text


@pytest.mark.parametrize("add_generation_prompt", [False, True])
def test_chat_template_matches_render_dialog(fast, add_generation_prompt: bool):
    messages = PLAIN_DIALOG if add_generation_prompt else PLAIN_DIALOG + [Message("assistant", "Gern!")]
    rendered = fast.apply_chat_template(
        [as_hf_message(m) for m in messages], tokenize=False, add_generation_prompt=add_generation_prompt
    )
    assert rendered == render_dialog(messages, add_generation_prompt=add_generation_prompt)


def test_chat_template_with_tools_matches_render_dialog(fast):
    rendered = fast.apply_chat_template(
        [as_hf_message(m) for m in TOOL_DIALOG[:2]],
        tools=[WEATHER.to_json()],
        builtin_tools=["brave_search", "wolfram_alpha", "code_interpreter"],
        date_string=format_date(DAY),
        tokenize=False,
        add_generation_prompt=True,
    )
    assert rendered == render_dialog(TOOL_DIALOG[:2], tools=TOOLS, today=DAY, add_generation_prompt=True)


def test_chat_template_assistant_mask_matches_training_mask(tok: Tokenizer, fast):
    out = fast.apply_chat_template(
        [as_hf_message(m) for m in TOOL_DIALOG],
        tools=[WEATHER.to_json()],
        builtin_tools=["brave_search", "wolfram_alpha", "code_interpreter"],
        date_string=format_date(DAY),
        return_dict=True,
        return_assistant_tokens_mask=True,
    )
    ids, mask = encode_dialog_for_training(TOOL_DIALOG, tok, tools=TOOLS, today=DAY)
    assert out["input_ids"] == ids
    assert [bool(m) for m in out["assistant_masks"]] == mask
