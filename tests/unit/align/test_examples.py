import torch
import torch.nn.functional as F

from llamaops.platform.align.examples import (
    Example,
    batch_indices,
    encode_dialog,
    fitting,
    pack_batch,
    without_formatting_tokens,
)
from llamaops.platform.align.losses import masked_loss_sum, response_logprobs
from llamaops.platform.config.model import ModelConfig
from llamaops.platform.model import Transformer
from llamaops.platform.model.loss import IGNORE_INDEX
from llamaops.platform.tokenizer import Message, load_tokenizer

DIALOG = (
    Message("system", "Be brief."),
    Message("user", "Hi there"),
    Message("assistant", "Hello!"),
    Message("user", "How are you?"),
    Message("assistant", "Fine, thanks."),
)


def _learned_text(example: Example, tokenizer) -> list[str]:
    """The learned tokens, decoded run by run."""
    runs, current = [], []
    for token, learned in zip(example.ids, example.trained):
        if learned:
            current.append(token)
        elif current:
            runs.append(tokenizer.decode(current))
            current = []
    return runs + ([tokenizer.decode(current)] if current else [])


def test_only_assistant_answers_and_their_end_of_turn_are_learned():
    tokenizer = load_tokenizer()
    example = encode_dialog(DIALOG, tokenizer)
    assert _learned_text(example, tokenizer) == ["Hello!<|eot_id|>", "Fine, thanks.<|eot_id|>"]


def test_targets_are_the_next_learned_token_and_ignore_everything_else():
    tokenizer = load_tokenizer()
    example = encode_dialog(DIALOG, tokenizer)
    inputs, targets = example.inputs_and_targets()
    assert inputs == list(example.ids[:-1])
    learned = [t for t in targets if t != IGNORE_INDEX]
    assert learned == [t for t, m in zip(example.ids[1:], example.trained[1:]) if m]
    assert len(learned) == example.trained_tokens


def test_formatting_tokens_are_masked_for_preferences():
    tokenizer = load_tokenizer()
    example = without_formatting_tokens(encode_dialog(DIALOG, tokenizer), tokenizer)
    assert _learned_text(example, tokenizer) == ["Hello!", "Fine, thanks."]
    assert tokenizer.eot_id in example.ids


def test_fitting_drops_long_and_unlearned_examples():
    long = Example((1, 2, 3, 4), (False, True, True, True))
    unlearned = Example((1, 2), (False, False))
    short = Example((1, 2), (False, True))
    assert fitting([long, unlearned, short], seq_len=2) == [short]


def test_pack_batch_puts_examples_back_to_back_with_document_ids():
    a, b = Example((5, 6, 7), (False, True, True)), Example((8, 9), (False, True))
    tokens, targets, document_ids = pack_batch([a, b])
    assert tokens.tolist() == [[5, 6, 8]]
    assert targets.tolist() == [[6, 7, 9]]
    assert document_ids.tolist() == [[0, 0, 1]]


def test_batches_cover_every_example_each_epoch_and_are_reproducible():
    batches = list(batch_indices(count=6, batch_size=3, steps=4, seed=1))
    assert sorted(batches[0] + batches[1]) == list(range(6))
    assert sorted(batches[2] + batches[3]) == list(range(6))
    assert batches == list(batch_indices(count=6, batch_size=3, steps=4, seed=1))


SMALL = ModelConfig(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_hidden_dim=64, vocab_size=50, max_seq_len=64)


def _reference_logprob(model: Transformer, example: Example) -> torch.Tensor:
    """Each example alone, through the full logits."""
    inputs, targets = example.inputs_and_targets()
    logp = F.log_softmax(model(torch.tensor([inputs]))[0].float(), dim=-1)
    return sum(logp[i, t] for i, t in enumerate(targets) if t != IGNORE_INDEX)


def test_packed_losses_equal_each_example_run_alone():
    model = Transformer(SMALL)
    model.init_weights(seed=0)
    generator = torch.Generator().manual_seed(0)
    examples = []
    for length in (7, 11, 5):
        ids = torch.randint(0, 50, (length,), generator=generator).tolist()
        trained = [i >= 3 for i in range(length)]
        examples.append(Example(tuple(ids), tuple(trained)))
    expected = torch.stack([_reference_logprob(model, e) for e in examples])
    torch.testing.assert_close(response_logprobs(model, examples), expected, rtol=1e-5, atol=1e-4)
    loss_sum, count = masked_loss_sum(model, examples)
    assert count == sum(e.trained_tokens for e in examples) == 4 + 8 + 2
    torch.testing.assert_close(loss_sum, -expected.sum(), rtol=1e-5, atol=1e-4)
