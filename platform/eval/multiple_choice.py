"""Multiple choice by log-likelihood: each choice is scored as a continuation of the question.

The prediction is the choice with the highest summed log-probability of its tokens ("sum") or the
highest mean per token ("length-normalised", which does not favour short answers). Chance level
is the mean of 1 / number of choices.
"""
import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from llamaops.platform.model import Transformer
from llamaops.platform.serve.head import OutputHead
from llamaops.platform.tokenizer import Tokenizer

from .mmlu import Question


@dataclass(frozen=True)
class ChoiceScore:
    log_likelihood: float  # sum over the choice's tokens
    tokens: int

    @property
    def normalised(self) -> float:
        return self.log_likelihood / self.tokens


@dataclass
class MultipleChoiceResult:
    accuracy: float  # by summed log-likelihood
    accuracy_length_normalised: float
    chance: float
    questions: int


@torch.no_grad()
def score_continuations(model: Transformer, context: Sequence[int], continuations: Sequence[Sequence[int]],
                        head: OutputHead | None = None) -> list[ChoiceScore]:
    """Log-likelihood of each (non-empty) continuation after `context`, all in one right-padded
    batch. head: a tensor-parallel model's sharded output projection (default: the model's own)."""
    if not context or any(not c for c in continuations):
        raise ValueError("context and every continuation need at least one token")
    sequences = [list(context) + list(c) for c in continuations]
    width = max(map(len, sequences))
    device = next(model.parameters()).device
    tokens = torch.tensor([seq + [0] * (width - len(seq)) for seq in sequences], device=device)
    hidden = model(tokens, project=False)
    # The token at position p is predicted by the hidden state at p - 1; all rows' predicting
    # states go through the output projection together (one pass over its weight).
    rows = torch.cat([torch.full((len(c),), i) for i, c in enumerate(continuations)])
    columns = torch.cat([torch.arange(len(c)) + len(context) - 1 for c in continuations])
    targets = torch.tensor([t for c in continuations for t in c])
    head = head or OutputHead(model.output.weight, screen=False)
    logits = head.logits(hidden[rows.to(device), columns.to(device)]).float().cpu()
    picked = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    sums = torch.zeros(len(continuations), dtype=picked.dtype).index_add_(0, rows, picked)
    return [ChoiceScore(float(total), len(c)) for total, c in zip(sums, continuations)]


def encode_choices(tokenizer: Tokenizer, context: str, continuations: Sequence[str]) -> tuple[list[int], list[list[int]]]:
    """Token ids of a context and its continuations as lm-evaluation-harness forms them: trailing
    whitespace of the context moves to the continuations, and each continuation's ids are the tail
    of the whole text's ids after the context's own ids (so a merge across the boundary is kept)."""
    stripped = context.rstrip()
    moved = context[len(stripped):]
    context_ids = tokenizer.encode(stripped, bos=True)
    return context_ids, [tokenizer.encode(stripped + moved + c, bos=True)[len(context_ids):] for c in continuations]


def prompt_and_choices(question: Question, tokenizer: Tokenizer) -> tuple[list[int], list[list[int]]]:
    return encode_choices(tokenizer, f"Question: {question.question}\nAnswer:", [f" {c}" for c in question.choices])


def select_questions(questions: list[Question], tokenizer: Tokenizer, count: int, max_tokens: int, seed: int) -> list[Question]:
    """Up to `count` questions whose prompt plus longest choice fits `max_tokens`, sampled reproducibly
    (a seeded shuffle, taken in order, so only the questions looked at are tokenized)."""
    order = list(range(len(questions)))
    random.Random(seed).shuffle(order)
    picked = []
    for index in order:
        context, choices = prompt_and_choices(questions[index], tokenizer)
        if len(context) + max(map(len, choices)) <= max_tokens:
            picked.append(index)
            if len(picked) == count:
                break
    return [questions[i] for i in sorted(picked)]


def multiple_choice_accuracy(questions: list[Question], scores_of: list[list[ChoiceScore]]) -> MultipleChoiceResult:
    """Accuracy of the choices' scores (`scores_of[i]`: question i's, score_continuations)."""
    if not questions:
        raise ValueError("no questions to evaluate")
    correct_sum = correct_normalised = 0
    for question, scores in zip(questions, scores_of, strict=True):
        correct_sum += argmax([s.log_likelihood for s in scores]) == question.answer
        correct_normalised += argmax([s.normalised for s in scores]) == question.answer
    n = len(questions)
    chance = sum(1 / len(q.choices) for q in questions) / n
    return MultipleChoiceResult(correct_sum / n, correct_normalised / n, chance, n)


def argmax(values: list[float]) -> int:
    return max(range(len(values)), key=values.__getitem__)
