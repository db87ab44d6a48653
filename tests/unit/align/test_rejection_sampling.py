import pytest
import torch

from llamaops.platform.align.rejection_sampling import rejection_sample, score_replies
from llamaops.platform.align.reward import RewardModel
from llamaops.platform.config.model import ModelConfig
from llamaops.platform.config.stages import RejectionSamplingConfig
from llamaops.platform.eval.generation import sample_each
from llamaops.platform.model import Transformer
from llamaops.platform.serve.sampling import SamplingParams
from llamaops.platform.tokenizer import Message, encode_dialog_for_generation, load_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


def _model(tokenizer, seed: int) -> Transformer:
    cfg = ModelConfig(dim=16, n_layers=1, n_heads=2, n_kv_heads=1, ffn_hidden_dim=32,
                      vocab_size=tokenizer.vocab_size, max_seq_len=128, rope_scaling=None)
    model = Transformer(cfg)
    model.init_weights(seed)
    return model.eval()


def test_best_of_k_by_reward(tokenizer):
    torch.manual_seed(0)
    policy = _model(tokenizer, 0)
    reward_model = RewardModel(_model(tokenizer, 1), score_token=tokenizer.vocab_size - 1)  # random: rewards differ
    prompts = [(Message("user", "Hello, how are you?"),), (Message("user", "Name a colour."),)]
    cfg = RejectionSamplingConfig(samples_per_prompt=4, temperature=1.0, max_new_tokens=6)

    result = rejection_sample(policy, reward_model, tokenizer, prompts, cfg, seed=3, batch_size=3)
    assert result.samples == 8 and result.samples_per_second > 0
    encoded = [encode_dialog_for_generation(list(p), tokenizer) for p in prompts]
    samples = sample_each(policy, tokenizer, encoded, 4, SamplingParams(max_tokens=6, temperature=1.0, seed=3), 3)
    for prompt, options, chosen in zip(prompts, samples, result.selections):
        scores = score_replies(reward_model, tokenizer, [prompt] * 4, options)
        assert chosen.reply == options[max(range(4), key=scores.__getitem__)]
        assert chosen.reward == pytest.approx(max(scores)) and chosen.mean_reward == pytest.approx(sum(scores) / 4)
    assert result.mean_best_reward > result.mean_sample_reward  # distinct samples: the best beats the mean
    again = rejection_sample(policy, reward_model, tokenizer, prompts, cfg, seed=3, batch_size=3)
    assert [s.reply for s in again.selections] == [s.reply for s in result.selections]
