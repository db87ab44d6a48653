import pytest
import torch

from llamaops.platform.config.model import ModelConfig
from llamaops.platform.eval.generation import chat_replies, generate, sample_each
from llamaops.platform.model import Transformer
from llamaops.platform.serve.sampling import SamplingParams

from .conftest import vocab_model
from .unigram import unigram_model

GREEDY = SamplingParams(max_tokens=8, temperature=0.0)


@pytest.fixture(scope="module")
def model(tokenizer) -> Transformer:
    model = vocab_model(tokenizer, dim=32, n_layers=2)
    with torch.no_grad():  # sharp attention: a token's prediction depends on its context
        for block in model.layers.values():
            block.attention.wq.weight.mul_(8)
            block.attention.wk.weight.mul_(8)
    return model.eval()


def _argmax_without_cache(model, prompt, max_new_tokens, stop_ids) -> list[int]:
    tokens, generated = list(prompt), []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            token = int(model(torch.tensor([tokens]))[0, -1].argmax())
            if token in stop_ids:
                break
            generated.append(token)
            tokens.append(token)
    return generated


def test_engine_greedy_equals_argmax_decoding_without_cache(model, tokenizer):
    prompts = [tokenizer.encode(t, bos=True) for t in ["The cat sat on", "Hi", "One two three four five six"]]
    texts = generate(model, tokenizer, prompts, GREEDY, max_batch=2)  # more prompts than slots
    expected = [tokenizer.decode(_argmax_without_cache(model, p, 8, tokenizer.stop_ids)) for p in prompts]
    assert texts == expected


def test_chat_replies_decode_until_end_of_turn(tokenizer):
    cfg = ModelConfig(dim=16, n_layers=1, n_heads=2, n_kv_heads=1, ffn_hidden_dim=32, max_seq_len=128, rope_scaling=None)
    (sorry,) = tokenizer.encode("Sorry")
    always_sorry = unigram_model(cfg, {sorry: 10.0})
    assert chat_replies(always_sorry, tokenizer, ["Hi", "Tell me a joke"], max_new_tokens=3, batch_size=1) == ["SorrySorrySorry"] * 2
    always_eot = unigram_model(cfg, {tokenizer.eot_id: 10.0})
    assert chat_replies(always_eot, tokenizer, ["Hi"], max_new_tokens=5, batch_size=4) == [""]


def test_prompt_too_long_for_the_model_is_refused(model, tokenizer):
    with pytest.raises(ValueError, match="more than the context"):
        generate(model, tokenizer, [[1] * 62], GREEDY)


def test_same_seed_same_samples_whatever_the_batching(model, tokenizer):
    prompts = [tokenizer.encode(t, bos=True) for t in ["Once upon", "A B C"]]
    hot = SamplingParams(max_tokens=8, temperature=2.0, seed=5)
    first = sample_each(model, tokenizer, prompts, 3, hot, max_batch=4)
    assert sample_each(model, tokenizer, prompts, 3, hot, max_batch=4) == first  # run to run
    assert sample_each(model, tokenizer, prompts, 3, hot, max_batch=1) == first  # batch size does not matter
    assert len(set(first[0])) > 1  # the samples of one prompt differ (seed + request index)
    other = sample_each(model, tokenizer, prompts, 3, SamplingParams(max_tokens=8, temperature=2.0, seed=6))
    assert other != first
    # A nucleus smaller than any token's probability keeps only the most likely token: greedy.
    narrow = sample_each(model, tokenizer, prompts, 1, SamplingParams(max_tokens=8, top_p=1e-9, seed=0))
    assert [n[0] for n in narrow] == generate(model, tokenizer, prompts, GREEDY)
