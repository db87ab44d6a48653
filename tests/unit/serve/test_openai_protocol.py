import json

import pytest

from llamaops.platform.serve import RequestError
from llamaops.platform.serve import openai_protocol as proto
from llamaops.platform.tokenizer import load_tokenizer

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def test_custom_tool_call_text_becomes_openai_tool_calls():
    reply, finish = proto.chat_reply('{"name": "get_weather", "parameters": {"city": "Paris"}}', "stop")
    assert finish == "tool_calls" and reply["content"] is None
    [call] = reply["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"]["name"] == "get_weather" and json.loads(call["function"]["arguments"]) == {"city": "Paris"}


def test_builtin_tool_call_after_python_tag():
    reply, finish = proto.chat_reply('<|python_tag|>brave_search.call(query="llama")', "stop")
    assert finish == "tool_calls" and reply["tool_calls"][0]["function"]["name"] == "brave_search"


def test_plain_text_stays_content():
    assert proto.chat_reply("Hello!", "length") == ({"role": "assistant", "content": "Hello!"}, "length")


def test_tools_are_rendered_into_the_system_prompt_and_tool_results_are_ipython():
    tokenizer = load_tokenizer()
    body = {
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
            ]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        ],
        "tools": [WEATHER],
    }
    text = tokenizer.decode(proto.chat_prompt(body, tokenizer))
    system = text.split("<|eot_id|>")[0]
    assert "<|start_header_id|>system" in system and '"get_weather"' in system and "Environment: ipython" in system
    assert "<|start_header_id|>ipython<|end_header_id|>\n\nsunny" in text
    assert text.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")


@pytest.mark.parametrize(
    "body",
    [{"messages": []}, {"messages": [{"role": "wizard", "content": "x"}]}, {"messages": [{"role": "user"}], "tools": [{}]}],
)
def test_bad_chat_bodies_are_request_errors(body):
    with pytest.raises(RequestError):
        proto.chat_prompt(body, load_tokenizer())


def test_sampling_params_and_stop_trimming():
    params = proto.sampling_params({"max_tokens": 5, "temperature": 0, "stop": "END", "seed": 3}, 99)
    assert (params.max_tokens, params.greedy, params.stop, params.seed) == (5, True, ("END",), 3)
    assert proto.sampling_params({}, 99).max_tokens == 99
    with pytest.raises(RequestError, match="max_tokens"):
        proto.sampling_params({"max_tokens": -1}, 99)
    assert proto.trim_at_stop("abc END def", ("END", "c")) == "ab"
