import pytest
import torch

from llamaops.platform.eval.generation import chat_replies, generate_greedy

from .conftest import SMALL
from .unigram import unigram_model


def _argmax_without_cache(model, prompt, max_new_tokens, stop_ids):
    tokens, generated = list(prompt), []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            token = int(model(torch.tensor([tokens]))[0, -1].argmax())
            if token in stop_ids:
                return generated, token
            generated.append(token)
            tokens.append(token)
    return generated, None


def test_batched_cached_greedy_equals_argmax_decoding_without_cache(sharp_model):
    prompts = [[1, 2, 3, 4, 5, 6, 7], [9], [200, 17, 33]]  # different lengths share one batch
    generations = generate_greedy(sharp_model, prompts, max_new_tokens=12, stop_ids=set())
    for prompt, generation in zip(prompts, generations):
        expected, stop = _argmax_without_cache(sharp_model, prompt, 12, set())
        assert generation.tokens == expected and generation.stop_token is stop is None
        assert len(generation.tokens) == 12


def test_generation_stops_at_a_stop_token_per_row(sharp_model):
    prompts = [[1, 2, 3], [40, 41]]
    free = generate_greedy(sharp_model, prompts, max_new_tokens=6, stop_ids=set())
    stop = free[0].tokens[2]  # row 0 must stop before its third token
    stopped = generate_greedy(sharp_model, prompts, max_new_tokens=6, stop_ids={stop})
    assert stopped[0].tokens == free[0].tokens[:2] and stopped[0].stop_token == stop
    expected_row1, expected_stop1 = _argmax_without_cache(sharp_model, prompts[1], 6, {stop})
    assert (stopped[1].tokens, stopped[1].stop_token) == (expected_row1, expected_stop1)


def test_chat_replies_decode_until_end_of_turn():
    from llamaops.platform.config.model import ModelConfig
    from llamaops.platform.tokenizer import load_tokenizer

    tokenizer = load_tokenizer()
    cfg = ModelConfig(dim=16, n_layers=1, n_heads=2, n_kv_heads=1, ffn_hidden_dim=32, max_seq_len=128, rope_scaling=None)
    (sorry,) = tokenizer.encode("Sorry")
    always_sorry = unigram_model(cfg, {sorry: 10.0})
    assert chat_replies(always_sorry, tokenizer, ["Hi", "Tell me a joke"], max_new_tokens=3, batch_size=1) == ["SorrySorrySorry"] * 2
    always_eot = unigram_model(cfg, {tokenizer.eot_id: 10.0})
    assert chat_replies(always_eot, tokenizer, ["Hi"], max_new_tokens=5, batch_size=4) == [""]


def test_prompt_too_long_for_the_model_is_refused_before_decoding(sharp_model):
    with pytest.raises(ValueError, match="exceeds the model's max_seq_len"):
        generate_greedy(sharp_model, [[1] * (SMALL.max_seq_len - 2)], max_new_tokens=5, stop_ids=set())


def test_sampling_is_seeded_and_top_p_narrows_to_greedy(small_model):
    from llamaops.platform.eval.generation import Sampling

    prompts = [[1, 2, 3], [7, 8]]
    hot = Sampling(temperature=2.0, top_p=1.0, seed=5)
    first = generate_greedy(small_model, prompts, 8, set(), hot)
    assert [g.tokens for g in first] == [g.tokens for g in generate_greedy(small_model, prompts, 8, set(), hot)]
    other = generate_greedy(small_model, prompts, 8, set(), Sampling(2.0, 1.0, seed=6))
    assert [g.tokens for g in other] != [g.tokens for g in first]
    # A nucleus smaller than any token's probability keeps only the most likely token: greedy.
    narrow = generate_greedy(small_model, prompts, 8, set(), Sampling(1.0, top_p=1e-9, seed=0))
    assert [g.tokens for g in narrow] == [g.tokens for g in generate_greedy(small_model, prompts, 8, set())]
    with pytest.raises(ValueError, match="temperature > 0"):
        Sampling(temperature=0.0)
