"""Tokenized training examples: a dialog's ids, which of them are learned, and padded batches."""
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from llamaops.platform.model.loss import IGNORE_INDEX
from llamaops.platform.tokenizer import Message, Tokenizer, encode_dialog_for_training


@dataclass(frozen=True)
class Example:
    ids: tuple[int, ...]
    trained: tuple[bool, ...]  # True where the model must learn to produce the token

    def inputs_and_targets(self) -> tuple[list[int], list[int]]:
        """Next-token pairs: targets are IGNORE_INDEX wherever the next token is not learned."""
        targets = [t if learned else IGNORE_INDEX for t, learned in zip(self.ids[1:], self.trained[1:])]
        return list(self.ids[:-1]), targets

    @property
    def trained_tokens(self) -> int:
        return sum(self.trained[1:])


def encode_dialog(messages: Sequence[Message], tokenizer: Tokenizer) -> Example:
    ids, mask = encode_dialog_for_training(messages, tokenizer)
    return Example(tuple(ids), tuple(mask))


def without_formatting_tokens(example: Example, tokenizer: Tokenizer) -> Example:
    """The same ids learning only the response's text: special tokens (<|eot_id|>, <|python_tag|>,
    ...) are shared by chosen and rejected answers and carry no preference."""
    special = set(tokenizer.special_tokens.values())
    return Example(example.ids, tuple(learned and t not in special for t, learned in zip(example.ids, example.trained)))


def fitting(examples: Sequence[Example], seq_len: int) -> list[Example]:
    """Examples that fit `seq_len` next-token pairs and learn at least one token."""
    return [e for e in examples if len(e.ids) - 1 <= seq_len and e.trained_tokens > 0]


def pack_batch(examples: Sequence[Example]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(tokens, targets, document_ids) [1, T]: the examples back to back in one row, no padding.
    document_ids keep attention within each example and restart its positions at 0, so each is
    computed exactly as if alone."""
    tokens: list[int] = []
    targets: list[int] = []
    document_ids: list[int] = []
    for index, example in enumerate(examples):
        inputs, example_targets = example.inputs_and_targets()
        tokens += inputs
        targets += example_targets
        document_ids += [index] * len(inputs)
    return tuple(torch.tensor([values], dtype=torch.long) for values in (tokens, targets, document_ids))  # type: ignore[return-value]


def batch_indices(count: int, batch_size: int, steps: int, seed: int) -> Iterator[list[int]]:
    """`steps` batches of indices into `count` items: shuffled epochs, reshuffled each time round."""
    generator = torch.Generator().manual_seed(seed)
    order: list[int] = []
    for _ in range(steps):
        batch = []
        while len(batch) < batch_size:
            if not order:
                order = torch.randperm(count, generator=generator).tolist()
            batch.append(order.pop())
        yield batch
