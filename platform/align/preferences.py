"""Preference pairs built from the chatterbot dialogs, no extra model or labeller needed.

For each dialog the prompt is every turn before its last answer, the chosen response is that real
answer and the rejected response is the same answer with its words scrambled (a fixed shuffle
picked by a hash of the dialog). Both responses hold the same words, so the preference is only for
fluent, well-formed language: a model learns it from the order of tokens alone, which even the
tiny preset can pick up and carry to unseen answers, while a preference that needs the prompt read
first (e.g. another dialog's answer as the rejected one) is beyond a few-million-token model.
Answers of fewer than two distinct words yield no pair. Pairs use the same split as SFT, so
held-out pairs come from dialogs neither stage trained on.
"""
import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass

import torch

from llamaops.platform.config.stages import SFTConfig
from llamaops.platform.tokenizer import Message, Tokenizer, load_tokenizer

from .conversations import Conversation, check_languages, load_conversations, split_conversations
from .errors import AlignmentError
from .examples import Example, encode_dialog, without_formatting_tokens


@dataclass(frozen=True)
class PreferencePair:
    prompt: tuple[Message, ...]
    chosen: str
    rejected: str


@dataclass(frozen=True)
class EncodedPair:
    chosen: Example
    rejected: Example


def scrambled(text: str, key: str) -> str | None:
    """`text` with its words in another order fixed by `key`; None when no other order exists."""
    words = text.split()
    if len(set(words)) < 2:
        return None
    rng = random.Random(int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little"))
    shuffled = list(words)
    while shuffled == words:
        rng.shuffle(shuffled)
    return " ".join(shuffled)


def build_pairs(conversations: list[Conversation]) -> list[PreferencePair]:
    pairs = []
    for conversation in conversations:
        prompt, chosen = conversation.messages[:-1], conversation.messages[-1].content
        rejected = scrambled(chosen, "\n".join(m.content for m in conversation.messages))
        if rejected is not None:
            pairs.append(PreferencePair(prompt, chosen, rejected))
    return pairs


def encode_pair(pair: PreferencePair, tokenizer: Tokenizer, mask_formatting_tokens: bool) -> EncodedPair:
    """Both dialogs, learning only the final answer (earlier assistant turns are shared context)."""
    encoded = []
    for response in (pair.chosen, pair.rejected):
        prompt_ids = encode_dialog(pair.prompt, tokenizer).ids
        full = encode_dialog((*pair.prompt, Message("assistant", response)), tokenizer)
        trained = tuple(i >= len(prompt_ids) and learned for i, learned in enumerate(full.trained))
        example = Example(full.ids, trained)
        encoded.append(without_formatting_tokens(example, tokenizer) if mask_formatting_tokens else example)
    return EncodedPair(*encoded)


def usable_pairs(pairs: list[PreferencePair], limit: int, seq_len: int, encode: Callable[[PreferencePair], EncodedPair]) -> list[EncodedPair]:
    """The first `limit` pairs whose chosen and rejected dialogs fit `seq_len` and score a token."""

    def fits(e) -> bool:
        return len(e.ids) - 1 <= seq_len and e.trained_tokens > 0

    usable = []
    for pair in pairs:
        encoded = encode(pair)
        if fits(encoded.chosen) and fits(encoded.rejected):
            usable.append(encoded)
            if len(usable) == limit:
                break
    return usable


def seeded_order(items: list, seed: int) -> list:
    order = torch.randperm(len(items), generator=torch.Generator().manual_seed(seed)).tolist()
    return [items[i] for i in order]


def preference_split(sft: SFTConfig, seed: int, train_pairs: int, held_out_pairs: int,
                     mask_formatting_tokens: bool) -> tuple[list[EncodedPair], list[EncodedPair]]:
    """(training pairs, held-out pairs) from the SFT split's dialogs (held-out pairs come from
    dialogs no stage trained on), in an order fixed by `seed`, each fitting the SFT length."""
    check_languages(sft.languages)
    tokenizer = load_tokenizer()
    train_dialogs, held_out_dialogs = split_conversations(load_conversations(sft.languages), sft.held_out_fraction,
                                                          sft.seed)

    def encoded(dialogs, limit: int) -> list[EncodedPair]:
        return usable_pairs(seeded_order(build_pairs(dialogs), seed), limit, sft.seq_len,
                            lambda p: encode_pair(p, tokenizer, mask_formatting_tokens))

    train, held_out = encoded(train_dialogs, train_pairs), encoded(held_out_dialogs, held_out_pairs)
    if not train or not held_out:
        raise AlignmentError(f"no preference pairs fit post_training.sft.seq_len={sft.seq_len}; raise it")
    return train, held_out
