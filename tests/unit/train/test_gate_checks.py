"""The long-context gate's teacher-forced needle check and the argmax hits it counts (the sharded
figures under every layout: tests/integration/train/test_gate_in_workers.py)."""
import pytest
import torch

from llamaops.platform.config import load_preset
from llamaops.platform.config.parallel import ParallelLayout
from llamaops.platform.eval.generation import chat_replies
from llamaops.platform.eval.needle import NeedleCase, needle_accuracy
from llamaops.platform.model.loss import linear_cross_entropy
from llamaops.platform.model.transformer import Transformer
from llamaops.platform.tokenizer import Message, encode_dialog_for_generation, load_tokenizer
from llamaops.platform.train.gate_checks import needle_found_sums
from llamaops.platform.train.rank_model import build_rank_model


def test_argmax_hits_count_only_counted_targets():
    hidden, weight = torch.randn(5, 8), torch.randn(11, 8)
    argmax = (hidden @ weight.T).argmax(-1)
    targets = torch.tensor([int(argmax[0]), int(argmax[1]), (int(argmax[2]) + 1) % 11, -100, int(argmax[4])])
    with torch.no_grad():
        loss, hits = linear_cross_entropy(hidden, weight, targets, reduction="sum", chunk_size=2, count_hits=True)
    assert hits == 3  # rows 0, 1 and 4; row 3 is ignored though its argmax is anything
    assert torch.isclose(loss, linear_cross_entropy(hidden, weight, targets, reduction="sum"))
    with pytest.raises(ValueError, match="no_grad"):
        linear_cross_entropy(hidden.requires_grad_(), weight, targets, count_hits=True)


def test_the_teacher_forced_needle_check_gives_greedy_generations_verdict():
    """A needle the model misses (tiny's random weights never say the secret) and one it finds:
    the secret replaced by the model's own greedy reply."""
    tokenizer = load_tokenizer()
    preset = load_preset("tiny")
    torch.manual_seed(0)
    model = Transformer(preset.model.model_copy(update={"dim": 32, "n_layers": 1, "ffn_hidden_dim": 64}))
    model.init_weights(seed=0)
    prompt_text = "Far away the river bends. The secret number is 40321. What is the secret number?"
    prompt = encode_dialog_for_generation([Message("user", prompt_text)], tokenizer)
    greedy = chat_replies(model, tokenizer, [prompt_text], 2, 1)[0]
    reply = tokenizer.encode(greedy)
    assert tokenizer.decode(reply) == greedy and len(reply) == 2, "pick a prompt whose greedy reply re-encodes"
    placed = build_rank_model(model, ParallelLayout(), torch.device("cpu"))
    for secret in ("40321", greedy):
        case = NeedleCase(length=len(prompt), depth=0.5, secret=secret, prompt=prompt_text)
        verdict = needle_accuracy(lambda prompts: chat_replies(model, tokenizer, prompts, 4, 1), [case])
        sums = needle_found_sums(placed, [(prompt, tokenizer.encode(secret))], 64, torch.device("cpu"))[0]
        found = bool(sums[2] == sums[1])
        assert found == (verdict["needle_accuracy"] == 1.0) == (secret == greedy), (secret, greedy, sums)
