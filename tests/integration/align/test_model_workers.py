"""Generation and reward scoring on Ray workers (real processes, gloo): a model split over two
tensor-parallel ranks, or copied into two groups that share the prompts, gives exactly the texts
one process gives, each rank holding only its shards; rejection sampling keeps each prompt's
best-rewarded reply as the reward model scores it in one process."""
import pytest
import torch

from llamaops.platform.align.examples import encode_dialog
from llamaops.platform.align.rejection_sampling import rejection_sample, scored_tokens
from llamaops.platform.align.reward import RewardModel
from llamaops.platform.config.model import ModelConfig
from llamaops.platform.config.stages import RejectionSamplingConfig
from llamaops.platform.eval.generation import generate
from llamaops.platform.eval.model_workers import ModelWorkers, WorkerLayout
from llamaops.platform.model import Transformer
from llamaops.platform.model.checkpoint import save_model
from llamaops.platform.model.sizing import generation_memory
from llamaops.platform.serve.sampling import SamplingParams
from llamaops.platform.store import staged_output
from llamaops.platform.tokenizer import Message, encode_dialog_for_generation, load_tokenizer

pytestmark = pytest.mark.slow

SCORE_TOKEN = 128_255
DIALOGS = [(Message("user", f"Name {n} colours and say why."),) for n in range(5)]


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


def _published(tokenizer, path, seed: int, kv_heads: int = 2) -> tuple[Transformer, str]:
    cfg = ModelConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=kv_heads, ffn_hidden_dim=128,
                      vocab_size=tokenizer.vocab_size, max_seq_len=128, rope_scaling=None)
    model = Transformer(cfg)
    model.init_weights(seed)
    with torch.no_grad():  # a reward row of its own, so rewards differ from the policy's logits
        model.output.weight[SCORE_TOKEN].normal_(generator=torch.Generator().manual_seed(seed))
    with staged_output(path.as_uri()) as directory:
        save_model(model, directory)
    return model.eval(), path.as_uri()


@pytest.mark.parametrize("tp,groups,kv_heads", [(2, 1, 2), (1, 2, 2), (2, 1, 1)],
                         ids=["tp2", "two-groups", "tp2-one-kv-head-on-both-ranks"])
def test_workers_generate_what_one_process_generates(tokenizer, tmp_path, tp, groups, kv_heads):
    model, uri = _published(tokenizer, tmp_path / "model", seed=0, kv_heads=kv_heads)
    prompts = [encode_dialog_for_generation(list(d), tokenizer) for d in DIALOGS]
    greedy, hot = SamplingParams(max_tokens=12, temperature=0.0), SamplingParams(max_tokens=12, temperature=1.0, seed=7)
    dialogs = [scored_tokens(tokenizer, d, "Red, as blood.") for d in DIALOGS]
    with ModelWorkers(WorkerLayout(tp=tp, groups=groups)) as workers:
        workers.load(uri)
        assert workers.generate(prompts, greedy, 4) == generate(model, tokenizer, prompts, greedy, 4)
        assert workers.generate(prompts, hot, 4) == generate(model, tokenizer, prompts, hot, 4)
        held = workers.held_bytes()
        scores = workers.scores(dialogs, SCORE_TOKEN)
    whole = sum(p.numel() * p.element_size() for p in model.parameters())
    replicated = sum(p.numel() * p.element_size() for name, p in model.named_parameters()
                     if "norm" in name or name == "tok_embeddings.weight")
    kv = sum(p.numel() * p.element_size() for name, p in model.named_parameters() if name.endswith(("wk.weight", "wv.weight")))
    kv_heads = model.cfg.n_kv_heads
    kept_kv = kv // min(tp, kv_heads)  # beyond n_kv_heads ranks, each keeps the one head its queries use
    assert held == [replicated + (whole - replicated - kv) // tp + kept_kv] * (tp * groups)
    assert held[0] == generation_memory(model.cfg, tp, rows=1, context=1, compute_bytes=4).weights_bytes  # the plan's
    with torch.no_grad():
        want = RewardModel(model, SCORE_TOKEN)([encode_dialog((*d, Message("assistant", "Red, as blood.")), tokenizer)
                                                for d in DIALOGS])
    assert scores == pytest.approx(want.tolist(), rel=1e-5, abs=1e-6)


def test_rejection_sampling_keeps_the_best_rewarded_reply(tokenizer, tmp_path):
    policy, policy_uri = _published(tokenizer, tmp_path / "policy", seed=0)
    reward, reward_uri = _published(tokenizer, tmp_path / "reward", seed=1)
    cfg = RejectionSamplingConfig(samples_per_prompt=3, temperature=1.0, max_new_tokens=6, batch_size=4)
    with ModelWorkers(WorkerLayout(tp=2, groups=1)) as workers:
        result = rejection_sample(workers, policy_uri, reward_uri, SCORE_TOKEN, tokenizer, DIALOGS[:3], cfg, seed=3)
    assert result.samples == 9 and result.samples_per_second > 0
    prompts = [encode_dialog_for_generation(list(d), tokenizer) for d in DIALOGS[:3]]
    texts = generate(policy, tokenizer, [p for p in prompts for _ in range(3)],
                     SamplingParams(max_tokens=6, temperature=1.0, seed=3), 4)
    scorer = RewardModel(reward, SCORE_TOKEN)
    for n, (dialog, chosen) in enumerate(zip(DIALOGS, result.selections)):
        options = texts[3 * n : 3 * n + 3]
        with torch.no_grad():
            rewards = scorer([encode_dialog((*dialog, Message("assistant", o)), tokenizer) for o in options]).tolist()
        assert chosen.reply == options[max(range(3), key=rewards.__getitem__)]
        assert chosen.reward == pytest.approx(max(rewards), rel=1e-5)
    assert result.mean_best_reward > result.mean_sample_reward


def test_a_layout_the_cluster_cannot_hold_fails_in_one_line(monkeypatch):
    from llamaops.platform.eval import model_workers

    monkeypatch.setattr(model_workers, "PLACEMENT_TIMEOUT_S", 2)
    with pytest.raises(model_workers.ModelWorkersError, match="64 model worker ranks .* found no room"):
        ModelWorkers(WorkerLayout(tp=8, groups=8))


def test_a_missing_model_is_one_line_from_the_driver(tmp_path):
    from llamaops.platform.store import ArtifactError

    with ModelWorkers(WorkerLayout()) as workers:
        with pytest.raises(ArtifactError, match="does not exist"):
            workers.load((tmp_path / "never-published").as_uri())
