"""Greedy batched generation with the KV cache, from raw token prompts or chat prompts.

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


@torch.no_grad()
def generate_greedy(
    model: Transformer, prompts: Sequence[Sequence[int]], max_new_tokens: int, stop_ids: Collection[int]
) -> list[Generation]:
    """Argmax continuation of every prompt until a stop id or `max_new_tokens`, all rows in one batch."""
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
    next_tokens = model.output(hidden[torch.arange(batch), lengths - 1]).argmax(-1)

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
        next_tokens = logits[:, -1].argmax(-1)
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
