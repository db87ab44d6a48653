"""Greedy or sampled batched generation with the KV cache, from raw token prompts or chat prompts.

Prompts of different lengths share one batch: they are right-padded for the prefill and each row
then decodes at its own positions (the cache masks every row by its positions, so pad slots are
overwritten before any row can attend to them).
"""
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import torch

from llamaops.platform.model import KVCache, Transformer
from llamaops.platform.tokenizer import Message, Tokenizer, encode_dialog_for_generation

from .hidden import final_hidden_states


@dataclass
class Generation:
    tokens: list[int]  # generated ids, without the stop token
    stop_token: int | None  # None: ran out of max_new_tokens


@dataclass(frozen=True)
class Sampling:
    """Temperature and nucleus (top-p) sampling, reproducible from `seed`."""

    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not (self.temperature > 0 and 0 < self.top_p <= 1):
            raise ValueError(f"sampling needs temperature > 0 and 0 < top_p <= 1, got {self.temperature}, {self.top_p}")


def _next_tokens(logits: torch.Tensor, sampling: Sampling | None, generator: torch.Generator | None) -> torch.Tensor:
    """[B, vocab] logits -> [B] token ids: argmax, or a draw from the top-p mass at the temperature."""
    if sampling is None:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / sampling.temperature, dim=-1)
    if sampling.top_p == 1.0:  # no nucleus: skip sorting the 128K vocabulary
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True)
    # Keep the most likely tokens until their mass reaches top_p (the first one always).
    outside = sorted_probs.cumsum(-1) - sorted_probs >= sampling.top_p
    sorted_probs = sorted_probs.masked_fill(outside, 0.0)
    picked = torch.multinomial(sorted_probs, 1, generator=generator)
    return order.gather(-1, picked).squeeze(-1)


@torch.no_grad()
def generate_greedy(
    model: Transformer,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    stop_ids: Collection[int],
    sampling: Sampling | None = None,
) -> list[Generation]:
    """Continuation of every prompt until a stop id or `max_new_tokens`, all rows in one batch:
    argmax by default, or sampled (seeded: the same prompts and seed give the same tokens)."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("generation needs at least one prompt, each with at least one token")
    lengths = torch.tensor([len(p) for p in prompts])
    width = int(lengths.max())
    if width + max_new_tokens > model.cfg.max_seq_len:
        raise ValueError(
            f"prompt of {width} tokens + {max_new_tokens} new tokens exceeds the model's max_seq_len {model.cfg.max_seq_len}"
        )
    batch = len(prompts)
    dtype = next(model.parameters()).dtype
    cache = KVCache.allocate(model.cfg, batch, width + max_new_tokens, dtype=dtype)
    tokens = torch.tensor([list(p) + [0] * (width - len(p)) for p in prompts])
    positions = torch.arange(width).expand(batch, width)
    hidden = final_hidden_states(model, tokens, positions=positions, cache=cache)
    generator = torch.Generator().manual_seed(sampling.seed) if sampling else None
    next_tokens = _next_tokens(model.output(hidden[torch.arange(batch), lengths - 1]), sampling, generator)

    generations = [Generation([], None) for _ in prompts]
    active = [True] * batch
    for step in range(max_new_tokens):
        for row, token in enumerate(next_tokens.tolist()):
            if not active[row]:
                continue
            if token in stop_ids:
                generations[row].stop_token, active[row] = token, False
            else:
                generations[row].tokens.append(token)
        if not any(active) or step == max_new_tokens - 1:
            break
        positions = (lengths + step).unsqueeze(1)
        logits = model(next_tokens.unsqueeze(1), positions=positions, cache=cache)
        next_tokens = _next_tokens(logits[:, -1], sampling, generator)
    return generations


def chat_replies(
    model: Transformer, tokenizer: Tokenizer, user_prompts: Sequence[str], max_new_tokens: int, batch_size: int
) -> list[str]:
    """The assistant's greedy reply to each single-turn user prompt (Llama 3.1 dialog format)."""
    replies = []
    for start in range(0, len(user_prompts), batch_size):
        chunk = user_prompts[start : start + batch_size]
        prompts = [encode_dialog_for_generation([Message("user", text)], tokenizer) for text in chunk]
        for generation in generate_greedy(model, prompts, max_new_tokens, tokenizer.stop_ids):
            replies.append(tokenizer.decode(generation.tokens))
    return replies


def sample_completions(
    model: Transformer,
    tokenizer: Tokenizer,
    prompts: Sequence[str],
    samples_per_prompt: int,
    max_new_tokens: int,
    sampling: Sampling,
    batch_size: int,
) -> list[list[str]]:
    """`samples_per_prompt` sampled raw-text continuations of each prompt (no chat format)."""
    encoded = [tokenizer.encode(text, bos=True) for text in prompts]
    return _sample_texts(model, tokenizer, encoded, samples_per_prompt, max_new_tokens, sampling, batch_size)


def sample_chat_replies(
    model: Transformer,
    tokenizer: Tokenizer,
    dialogs: Sequence[Sequence[Message]],
    samples_per_prompt: int,
    max_new_tokens: int,
    sampling: Sampling,
    batch_size: int,
) -> list[list[str]]:
    """`samples_per_prompt` sampled assistant replies to each dialog (Llama 3.1 dialog format)."""
    encoded = [encode_dialog_for_generation(list(dialog), tokenizer) for dialog in dialogs]
    return _sample_texts(model, tokenizer, encoded, samples_per_prompt, max_new_tokens, sampling, batch_size)


def _sample_texts(
    model: Transformer,
    tokenizer: Tokenizer,
    encoded: Sequence[Sequence[int]],
    samples_per_prompt: int,
    max_new_tokens: int,
    sampling: Sampling,
    batch_size: int,
) -> list[list[str]]:
    """Rows (prompt, sample) batched across prompts and samples; batch i draws with seed
    sampling.seed + i, so reruns are identical."""
    rows = [(p, s) for p in range(len(encoded)) for s in range(samples_per_prompt)]
    texts: list[list[str]] = [[] for _ in encoded]
    for number, start in enumerate(range(0, len(rows), batch_size)):
        chunk = rows[start : start + batch_size]
        draw = Sampling(sampling.temperature, sampling.top_p, sampling.seed + number)
        generations = generate_greedy(model, [encoded[p] for p, _ in chunk], max_new_tokens, tokenizer.stop_ids, draw)
        for (p, _), generation in zip(chunk, generations):
            texts[p].append(tokenizer.decode(generation.tokens))
    return texts
