import pytest

from llamaops.platform.align.examples import encode_dialog
from llamaops.platform.align.rejection_sampling import best_of, scored_tokens
from llamaops.platform.tokenizer import Message, load_tokenizer


def test_best_of_keeps_each_prompts_highest_reward_reply():
    prompts = [(Message("user", "a"),), (Message("user", "b"),)]
    replies = [["x", "y", "z"], ["p", "q", "r"]]
    rewards = [0.1, 0.9, 0.5, 2.0, -1.0, 2.0]
    first, second = best_of(prompts, replies, rewards)
    assert (first.reply, first.reward, first.mean_reward) == ("y", 0.9, pytest.approx(0.5))
    assert (second.reply, second.reward) == ("p", 2.0)  # the first among equals
    assert first.prompt == prompts[0] and second.mean_reward == pytest.approx(1.0)


def test_the_reward_model_reads_the_dialog_up_to_the_token_before_its_end():
    tokenizer = load_tokenizer()
    dialog = (Message("user", "Name a colour."),)
    tokens = scored_tokens(tokenizer, dialog, "Blue.")
    whole = encode_dialog((*dialog, Message("assistant", "Blue.")), tokenizer).ids
    assert tokens == whole[:-1] and whole[-1] == tokenizer.special_tokens["<|eot_id|>"]
