"""Streaming text never shows what the final answer drops; tool calls become OpenAI tool_calls;
sampling honours top-k / top-p."""
import json

import torch

from llamaops.platform.serve.openai_api import ChatCompletionRequest, assistant_reply
from llamaops.platform.serve.sampling import SamplingParams, make_generator, sample
from llamaops.platform.serve.text import IncrementalText
from llamaops.platform.tokenizer import ToolCall, render_dialog
from llamaops.platform.tokenizer.chat_format import render_tool_call


def stream(tokenizer, text: str, stop=()) -> tuple[list[str], IncrementalText]:
    inc = IncrementalText(tokenizer, stop)
    pieces = []
    for token in tokenizer.encode(text):
        pieces.append(inc.add(token))
        if inc.stopped:
            break
    pieces.append(inc.finish())
    return pieces, inc


def test_streamed_pieces_join_to_the_text_and_stop_before_the_stop_sequence(tokenizer):
    pieces, inc = stream(tokenizer, "Alpha beta gamma. END more text", stop=("END",))
    assert "".join(pieces) == "Alpha beta gamma. " == inc.text and inc.stopped


def test_a_possible_stop_prefix_is_held_back_until_it_resolves(tokenizer):
    inc = IncrementalText(tokenizer, ("STOPWORD",))
    released = "".join(inc.add(t) for t in tokenizer.encode("hello STOP"))
    assert not released.endswith("STOP")  # could still become STOPWORD
    assert released + inc.finish() == "hello STOP"


def test_incomplete_utf8_is_not_released(tokenizer):
    ids = tokenizer.encode("日本語のテキスト")
    inc = IncrementalText(tokenizer)
    pieces = [inc.add(t) for t in ids] + [inc.finish()]
    assert all("\ufffd" not in p for p in pieces) and "".join(pieces) == "日本語のテキスト"


def test_a_custom_tool_call_is_returned_as_openai_tool_calls():
    text = render_tool_call(ToolCall("get_weather", {"city": "Paris"}))
    message, finish = assistant_reply(text, "stop", with_tools=True)
    assert finish == "tool_calls" and message["content"] is None
    call = message["tool_calls"][0]
    assert call["function"]["name"] == "get_weather" and json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert assistant_reply("Just text.", "stop", with_tools=True) == ({"role": "assistant", "content": "Just text."}, "stop")


def test_tools_and_tool_results_render_in_the_llama_31_format():
    request = ChatCompletionRequest.model_validate({
        "model": "m",
        "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                                  "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "3C"},
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
    })
    rendered = render_dialog(request.dialog(), tools=request.tool_definitions())
    assert "Environment: ipython" in rendered and '"name": "get_weather"' in rendered
    assert "<|start_header_id|>ipython<|end_header_id|>\n\n3C<|eot_id|>" in rendered
    assert '{"name": "get_weather", "parameters": {"city": "Oslo"}}<|eom_id|>' in rendered


def test_top_k_and_top_p_only_ever_pick_allowed_tokens():
    logits = torch.tensor([5.0, 4.0, 3.0, -10.0, -10.0])
    gen = make_generator(0)
    top_k = {sample(logits, SamplingParams(temperature=1.0, top_k=2), gen) for _ in range(200)}
    assert top_k == {0, 1}
    # p(0) ~ 0.665, p(1) ~ 0.245: top_p 0.8 keeps exactly those two
    top_p = {sample(logits, SamplingParams(temperature=1.0, top_p=0.8), gen) for _ in range(200)}
    assert top_p == {0, 1}
    assert sample(logits, SamplingParams(temperature=0), gen) == 0


def test_sampling_frequencies_follow_the_renormalized_distribution():
    # The CDF draw must reproduce softmax(logits / T) restricted to the kept tokens, not just their support.
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0])
    draws = 4000
    for params, kept in [
        (SamplingParams(temperature=1.0), 5),
        (SamplingParams(temperature=0.5, top_k=3), 3),
        (SamplingParams(temperature=1.0, top_p=0.7), 2),  # p ~ .56, .21, .13: the third starts past .7
    ]:
        gen = make_generator(3)
        counts = torch.bincount(torch.tensor([sample(logits, params, gen) for _ in range(draws)]), minlength=5)
        expected = torch.softmax(logits[:kept] / params.temperature, -1)
        assert counts[kept:].sum() == 0
        assert torch.allclose(counts[:kept] / draws, expected, atol=0.03), (params, counts)


def test_top_p_on_a_flat_distribution_falls_back_to_the_whole_vocabulary():
    # 3000 nearly equal logits: the top-p prefix is longer than the partial ranking, so the sampler must sort all.
    logits = torch.linspace(0.0, 0.5, 3000)
    probs = torch.softmax(logits, -1)
    order = probs.argsort(descending=True)
    kept = set(order[(probs[order].cumsum(0) - probs[order]) < 0.6].tolist())
    assert len(kept) > 1024
    gen = make_generator(0)
    draws = [sample(logits, SamplingParams(temperature=1.0, top_p=0.6), gen) for _ in range(300)]
    assert set(draws) <= kept and len(set(draws)) > 200
    assert min(draws) < 3000 - 1024  # a token outside the partial ranking was drawn
